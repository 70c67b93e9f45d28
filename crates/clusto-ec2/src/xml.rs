//! The EC2 Query API's XML answers as a small tree of elements (local
//! names, text, children), read with quick-xml. Attributes and namespaces
//! carry nothing EC2 needs.

use quick_xml::Reader;
use quick_xml::events::Event;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The element at `path` below this one (`["instancesSet", "item"]`).
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, p| n.child(p))
    }

    /// The text of the element at `path`, when it has any.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path)
            .map(|n| n.text.as_str())
            .filter(|t| !t.is_empty())
    }

    /// The `item` children of the element at `path` (EC2's lists).
    pub fn items(&self, path: &[&str]) -> impl Iterator<Item = &Node> {
        self.at(path)
            .into_iter()
            .flat_map(|n| n.children.iter().filter(|c| c.name == "item"))
    }
}

/// Elements deeper than this are refused (EC2 answers nest under 10).
const MAX_DEPTH: usize = 64;

/// Parses a whole document into its root element.
pub fn parse(text: &str) -> Result<Node, String> {
    let mut r = Reader::from_str(text);
    let mut stack: Vec<Node> = vec![Node::default()];
    loop {
        let ev = r.read_event().map_err(|e| format!("XML: {e}"))?;
        match ev {
            Event::Start(e) => {
                if stack.len() > MAX_DEPTH {
                    return Err("XML nests too deep".into());
                }
                stack.push(Node {
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    ..Node::default()
                });
            }
            Event::Empty(e) => {
                let node = Node {
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    ..Node::default()
                };
                stack.last_mut().expect("root").children.push(node);
            }
            Event::End(_) => {
                if stack.len() < 2 {
                    return Err("XML: unbalanced end tag".into());
                }
                let mut done = stack.pop().expect("checked");
                done.text = done.text.trim().to_string();
                stack.last_mut().expect("root").children.push(done);
            }
            Event::Text(t) => {
                let s = t.xml_content().map_err(|e| format!("XML: {e}"))?;
                stack.last_mut().expect("root").text.push_str(&s);
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| format!("XML: {e}"))?;
                stack.last_mut().expect("root").text.push_str(&s);
            }
            Event::GeneralRef(g) => {
                let c = match g.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name = g.decode().map_err(|e| format!("XML: {e}"))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("XML: unknown entity &{name};"))?
                            .to_string()
                    }
                };
                stack.last_mut().expect("root").text.push_str(&c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err("XML: document ends inside an element".into());
    }
    let mut top = stack.pop().expect("root").children;
    match top.len() {
        1 => Ok(top.remove(0)),
        0 => Err("XML: no element".into()),
        _ => Err("XML: more than one root element".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clusto_core::testing::Rng;

    const DESCRIBE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r-1</requestId>
  <reservationSet>
    <item>
      <instancesSet>
        <item>
          <instanceId>i-0abc</instanceId>
          <instanceState><code>16</code><name>running</name></instanceState>
          <tagSet>
            <item><key>Name</key><value>web &amp; db &#x41;</value></item>
            <item><key>empty</key><value/></item>
          </tagSet>
        </item>
      </instancesSet>
    </item>
  </reservationSet>
  <nextToken><![CDATA[tok<1>]]></nextToken>
</DescribeInstancesResponse>"#;

    #[test]
    fn describe_instances_reads_as_a_tree() {
        let n = parse(DESCRIBE).unwrap();
        assert_eq!(n.name, "DescribeInstancesResponse");
        let i = n
            .items(&["reservationSet"])
            .flat_map(|r| r.items(&["instancesSet"]))
            .next()
            .unwrap();
        assert_eq!(i.text_at(&["instanceId"]), Some("i-0abc"));
        assert_eq!(i.text_at(&["instanceState", "name"]), Some("running"));
        let tags: Vec<(&str, &str)> = i
            .items(&["tagSet"])
            .map(|t| {
                (
                    t.text_at(&["key"]).unwrap(),
                    t.text_at(&["value"]).unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(tags, vec![("Name", "web & db A"), ("empty", "")]);
        assert_eq!(n.text_at(&["nextToken"]), Some("tok<1>"));
    }

    #[test]
    fn broken_documents_are_errors() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "text",
            "<a>&bogus;</a>",
            "</a>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(parse(&deep).is_err());
    }

    /// Bounded fuzz: mutated answers give errors or trees, never panics.
    #[test]
    fn mutated_answers_never_panic() {
        let mut rng = Rng(11);
        let base = DESCRIBE.as_bytes();
        for _ in 0..3000 {
            let mut b = base.to_vec();
            for _ in 0..(1 + rng.below(8)) {
                let i = rng.below(b.len());
                match rng.below(3) {
                    0 => b[i] = rng.below(256) as u8,
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, b"<>&;/![]"[rng.below(8)]),
                }
            }
            let _ = parse(&String::from_utf8_lossy(&b));
        }
    }
}
