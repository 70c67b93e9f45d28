#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""Builds an inventory with the ORIGINAL clusto 0.7.9's own API, for the
`clusto import` test. Python 2.7 (the venv ../shared/bench/setup-clusto-original.sh
prepares). Usage: build_original.py DSN   (sqlite:///file.db or postgresql://...)

Then prints, as JSON, what the original itself answers for every entity:
attributes, merged attributes, pools, addresses, cables and locate, so the
test compares both tools' answers, not two readings of one database.
"""
from __future__ import print_function

import datetime
import json
import sys

try:
    import ConfigParser as configparser
except ImportError:  # pragma: no cover
    import configparser

import clusto
from clusto.drivers import (BasicDatacenter, BasicRack, BasicServer, BasicNetworkSwitch,
                            BasicPowerStrip, BasicConsoleServer, IPManager, Pool,
                            ExclusivePool, UniquePool, SimpleEntityNameManager)


def connect(dsn):
    conf = configparser.ConfigParser()
    conf.add_section('clusto')
    conf.set('clusto', 'dsn', dsn)
    conf.set('clusto', 'versioning', 'true')
    clusto.connect(conf)
    clusto.init_clusto()


def build():
    clusto.SESSION.clusto_user = 'ops-alice'
    dc = BasicDatacenter('dc1')
    dc.set_attr('dhcp', subkey='enabled', value=1)
    dc.set_attr('snmp', subkey='community', value='s3cret')
    racks = []
    for r in range(2):
        rack = BasicRack('rack-%d' % r)
        dc.insert(rack)
        rack.set_attr('location', subkey='row', value='A%d' % r)
        racks.append(rack)
    sw = BasicNetworkSwitch('sw0')
    racks[0].insert(sw, 45)
    pdu = BasicPowerStrip('pdu0')
    racks[0].insert(pdu, [43, 44])
    con = BasicConsoleServer('con0')
    racks[1].insert(con, 45)

    names = SimpleEntityNameManager('servernames', basename='s', digits=4, next=10)
    net = IPManager('net-10', baseip='10.0.0.0', netmask='255.255.255.0', gateway='10.0.0.1')
    web = Pool('web')
    web.set_attr('dhcp', subkey='filename', value='pxelinux.0')
    prod = Pool('prod')
    prod.insert(web)  # nested pools
    unalloc = ExclusivePool('unallocated')
    role = UniquePool('role-a')
    servers = []
    for i in range(6):
        s = names.allocate(BasicServer)
        racks[i % 2].insert(s, 1 + i)
        s.set_attr('system', subkey='memory', value=1024 * (i + 1))
        s.set_attr('system', subkey='serial', value='P%06d' % i)
        s.add_attr('tag', value='a', number=0)
        s.add_attr('tag', value='b', number=1)
        s.set_attr('bought', value=datetime.datetime(2011, 5, 1 + i, 12, 30, 0))
        s.set_attr('config', value={'disks': i, 'raid': 'r1'})
        net.allocate(s)
        if i < 3:
            web.insert(s)
            s.connect_ports('nic-eth', 1, sw, i + 1)
            s.connect_ports('pwr-nema-5', 1, pdu, i + 1)
            s.set_port_attr('nic-eth', 1, 'mac', '00:11:22:33:44:%02x' % i)
        else:
            unalloc.insert(s)
        servers.append(s)
    role.insert(servers[0])
    servers[1].set_attr('buddy', value=servers[0])  # a relation attribute
    net.allocate(sw, '10.0.0.250')
    servers[0].bind_ip_to_osport('10.0.0.2', 'eth0', porttype='nic-eth', portnum=1)
    # a deleted entity: its rows stay in the original's tables with deleted_at_version
    gone = BasicServer('gone')
    racks[1].insert(gone, 20)
    gone.entity.delete()


def answers():
    out = {}
    for e in clusto.get_entities():
        d = {'driver': e.driver, 'type': e.type}
        d['attrs'] = sorted([[a.key, a.subkey, a.number, a.datatype,
                              a.value.name if a.is_relation else
                              (a.value.isoformat() if isinstance(a.value, datetime.datetime)
                               else a.value)]
                             for a in e.attrs() if not a.key.startswith('_')],
                            key=lambda x: json.dumps(x, sort_keys=True))
        d['parents'] = sorted(p.name for p in e.parents())
        d['pools'] = sorted(p.name for p in clusto.drivers.Pool.get_pools(e, allPools=True))
        if isinstance(e, clusto.drivers.devices.common.IPMixin):
            d['ips'] = sorted(e.get_ips())
        if isinstance(e, clusto.drivers.devices.common.PortMixin):
            cables = []
            for ptype, ports in e.port_info.items():
                for num, info in ports.items():
                    if info['connection']:
                        cables.append(['%s:%s' % (ptype, num), info['connection'].name,
                                       '%s:%s' % (ptype, info['otherportnum'])])
            d['cables'] = sorted(cables)
        rau = BasicRack.get_rack_and_u(e) if isinstance(e, clusto.drivers.Device) else None
        if rau:
            d['rack'] = [rau['rack'].name, sorted(rau['RU'])]
        if e.name.startswith('s0'):
            d['merged_dhcp'] = sorted([a.subkey, a.value] for a in
                                      e.attrs('dhcp', merge_container_attrs=True))
        out[e.name] = d
    rows = clusto.SESSION.execute(clusto.CLUSTO_VERSIONING.select()).fetchall()
    out['_versions'] = [[r.version, r.timestamp.strftime('%Y-%m-%dT%H:%M:%S'), r.user]
                        for r in rows]
    return out


if __name__ == '__main__':
    connect(sys.argv[1])
    build()
    print(json.dumps(answers(), sort_keys=True, indent=1))
