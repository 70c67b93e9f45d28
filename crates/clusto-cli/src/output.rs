//! `-o json|yaml|table|name` rendering. Colours only on a TTY.

use std::io::{IsTerminal, Write};

use anyhow::Result;
use clap::ValueEnum;
use serde_json::Value as Json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
    /// One name per line, for scripts.
    Name,
}

pub fn print_json(v: &Json) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

pub fn print_yaml(v: &Json) -> Result<()> {
    let s = serde_saphyr::to_string(v)?;
    print!("{s}");
    Ok(())
}

/// Prints structured data in the chosen format; `table` gets `header` and
/// `rows`, `name` gets the first column.
pub fn emit(format: Format, data: &Json, header: &[&str], rows: Vec<Vec<String>>) -> Result<()> {
    match format {
        Format::Json => print_json(data),
        Format::Yaml => print_yaml(data),
        Format::Name => {
            for r in rows {
                if let Some(first) = r.first() {
                    println!("{first}");
                }
            }
            Ok(())
        }
        Format::Table => {
            table(header, &rows);
            Ok(())
        }
    }
}

pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w = Vec::new();
    widen(&mut w, header, rows);
    print_header(header, &w);
    print_rows(&w, rows);
}

/// Column widths that fit `header` and `rows` (never narrower than before).
fn widen(w: &mut Vec<usize>, header: &[&str], rows: &[Vec<String>]) {
    let n = header.len();
    w.resize(n, 0);
    for (i, h) in header.iter().enumerate() {
        w[i] = w[i].max(h.len());
    }
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
}

fn line(w: &[usize], cells: &[&str]) -> String {
    let mut s = String::new();
    for (i, c) in cells.iter().enumerate() {
        if i + 1 == cells.len() {
            s.push_str(c);
        } else {
            s.push_str(&format!(
                "{c:<width$}  ",
                width = w.get(i).copied().unwrap_or(0)
            ));
        }
    }
    s.trim_end().to_string()
}

fn print_header(header: &[&str], w: &[usize]) {
    let h = line(w, header);
    if std::io::stdout().is_terminal() {
        println!("\x1b[1m{h}\x1b[0m");
    } else {
        println!("{h}");
    }
}

fn print_rows(w: &[usize], rows: &[Vec<String>]) {
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        println!("{}", line(w, &cells));
    }
}

pub fn paint(code: &str, s: &str) -> String {
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// A list written page by page as it is read, so a long one (history,
/// every server) never sits in memory whole: `kind: List` items for JSON
/// and YAML, lines for names, rows for a table (its columns sized by the
/// first page).
pub struct ListWriter {
    format: Format,
    /// `kind: List` around the items, or a bare array (`query`).
    envelope: bool,
    header: &'static [&'static str],
    widths: Vec<usize>,
    items: usize,
}

impl ListWriter {
    pub fn new(format: Format, header: &'static [&'static str]) -> ListWriter {
        ListWriter {
            format,
            envelope: true,
            header,
            widths: Vec::new(),
            items: 0,
        }
    }

    /// Items as a bare JSON array or YAML sequence, no `kind: List`.
    pub fn bare(format: Format, header: &'static [&'static str]) -> ListWriter {
        ListWriter {
            envelope: false,
            ..ListWriter::new(format, header)
        }
    }

    /// One item for JSON or YAML (tables and names print their own lines
    /// through [`ListWriter::page`] or directly).
    pub fn item(&mut self, item: &Json) -> Result<()> {
        self.begin_item()?;
        let mut out = std::io::stdout().lock();
        match self.format {
            Format::Json => serde_json::to_writer(&mut out, item)?,
            Format::Yaml => out.write_all(serde_saphyr::to_string(&[item])?.as_bytes())?,
            Format::Table | Format::Name => {}
        }
        Ok(())
    }

    /// What comes before an item (the envelope, a separator); the caller
    /// writes the item itself (a JSON value, or a YAML `- ` entry).
    pub fn begin_item(&mut self) -> Result<()> {
        let mut out = std::io::stdout().lock();
        match self.format {
            Format::Json => {
                let sep = match (self.items, self.envelope) {
                    (0, true) => {
                        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"List\",\n  \"items\": [\n"
                    }
                    (0, false) => "[\n",
                    _ => ",\n",
                };
                out.write_all(sep.as_bytes())?;
            }
            Format::Yaml if self.items == 0 && self.envelope => {
                out.write_all(b"apiVersion: v1\nkind: List\nitems:\n")?;
            }
            _ => {}
        }
        self.items += 1;
        Ok(())
    }

    /// A page: `items` for JSON and YAML, `rows` otherwise.
    pub fn page(&mut self, items: Vec<Json>, rows: Vec<Vec<String>>) -> Result<()> {
        match self.format {
            Format::Json | Format::Yaml => {
                for i in &items {
                    self.item(i)?;
                }
            }
            Format::Name => {
                for r in rows {
                    if let Some(first) = r.first() {
                        println!("{first}");
                    }
                }
            }
            Format::Table => {
                if self.widths.is_empty() {
                    widen(&mut self.widths, self.header, &rows);
                    print_header(self.header, &self.widths);
                }
                print_rows(&self.widths, &rows);
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let mut out = std::io::stdout().lock();
        match (self.format, self.items, self.envelope) {
            (Format::Json, 0, true) => out.write_all(
                b"{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"List\",\n  \"items\": []\n}\n",
            )?,
            (Format::Json, _, true) => out.write_all(b"\n  ]\n}\n")?,
            (Format::Json, 0, false) => out.write_all(b"[]\n")?,
            (Format::Json, _, false) => out.write_all(b"\n]\n")?,
            (Format::Yaml, 0, true) => out.write_all(b"apiVersion: v1\nkind: List\nitems: []\n")?,
            (Format::Yaml, 0, false) => out.write_all(b"[]\n")?,
            (Format::Table, _, _) if self.widths.is_empty() => print_header(
                self.header,
                &self.header.iter().map(|h| h.len()).collect::<Vec<_>>(),
            ),
            _ => {}
        }
        Ok(())
    }
}
