//! `pvgate hash-token`: turn a viewer token into the hash the configuration
//! stores (tokens are never written down in clear).

use std::io::{BufRead, IsTerminal};

use anyhow::Context;

use crate::cli::HashTokenArgs;
use crate::config::{generate_token, sha256_hex};

/// Shorter tokens can be guessed; a generated one has 160 bits.
const MIN_TOKEN_LEN: usize = 16;

pub fn run(args: HashTokenArgs) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let generated = args.generate || stdin.is_terminal();
    let token = if generated {
        generate_token()?
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the token from standard input")?;
        let token = line.trim_end_matches(['\n', '\r']).to_string();
        check(&token)?;
        token
    };
    let hash = sha256_hex(&token);
    if generated {
        println!("token  {token}");
        println!("       (give it to its user; it is shown once and stored nowhere)");
    }
    println!("sha256 {hash}");
    println!();
    println!("# paste under the user's [[tenant]] in the configuration:");
    println!("[[tenant.token]]");
    println!("user = {:?}", args.user);
    println!("role = {:?}", args.role);
    println!("sha256 = \"{hash}\"");
    Ok(())
}

fn check(token: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !token.is_empty(),
        "no token on standard input: pipe one in (`printf %s TOKEN | pvgate hash-token`), or run `pvgate hash-token --generate`"
    );
    anyhow::ensure!(
        !token.chars().any(|c| c.is_whitespace() || c.is_control()),
        "the token contains spaces or control characters, which do not survive an Authorization header or a URL: choose another, or run `pvgate hash-token --generate`"
    );
    anyhow::ensure!(
        token.len() >= MIN_TOKEN_LEN,
        "the token is {} characters: use at least {MIN_TOKEN_LEN}, or run `pvgate hash-token --generate`",
        token.len()
    );
    anyhow::ensure!(
        token.len() <= 512,
        "the token is longer than 512 characters, which the gateway does not accept"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn tokens_that_would_not_survive_a_header_or_are_guessable_are_refused() {
        assert!(check("0123456789abcdef").is_ok());
        for (bad, why) in [
            ("", "--generate"),
            ("short", "at least 16"),
            ("with a space in it, long enough", "spaces"),
            ("tab\there-and-long-enough", "spaces"),
        ] {
            let e = check(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(check(&"x".repeat(513)).is_err());
    }
}
