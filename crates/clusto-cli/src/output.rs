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
    let n = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let bold = std::io::stdout().is_terminal();
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_string()
    };
    let h = line(header.to_vec());
    if bold {
        println!("\x1b[1m{h}\x1b[0m");
    } else {
        println!("{h}");
    }
    for r in rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
}

pub fn paint(code: &str, s: &str) -> String {
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}
