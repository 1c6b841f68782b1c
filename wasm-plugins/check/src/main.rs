//! `pvgate-plugin-check FILE.wasm...`: prints each plugin's imports and
//! exports and fails (exit 1) if the gateway would refuse it.

use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: pvgate-plugin-check PLUGIN.wasm...");
        return ExitCode::from(2);
    }
    let mut ok = true;
    for file in &files {
        let result = std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| pvgate_plugin_check::inspect(&bytes));
        match result {
            Err(e) => {
                println!("{file}: {e}");
                ok = false;
            }
            Ok(inspection) => {
                println!("{file}:");
                for i in &inspection.imports {
                    println!("  import {i}");
                }
                for e in &inspection.exports {
                    println!("  export {e}");
                }
                let problems = pvgate_plugin_check::problems(&inspection);
                for p in &problems {
                    println!("  REFUSED: {p}");
                }
                ok &= problems.is_empty();
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
