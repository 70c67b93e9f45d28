#!/bin/sh
# No-op client hook for dhclient (-sf) and udhcpc (-s): print what the server
# handed out and change nothing. The stock scripts rewrite the host's
# /etc/resolv.conf even inside a network namespace.
echo "hook: reason=${reason:-$1} ip=${new_ip_address:-$ip} mask=${new_subnet_mask:-$subnet} router=${new_routers:-$router} dns=${new_domain_name_servers:-$dns} domain=${new_domain_name:-$domain} siaddr=${new_next_server:-$siaddr} file=${new_filename:-$boot_file} serverid=${new_dhcp_server_identifier:-$serverid}" >&2
exit 0
