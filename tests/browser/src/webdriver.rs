//! A minimal W3C WebDriver client: just the commands the tests use.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::time::Duration;

/// One WebDriver session on a chromedriver.
pub struct Session {
    base: String,
    agent: ureq::Agent,
    closed: std::cell::Cell<bool>,
}

impl Session {
    /// Open a session on the driver at `driver_url` with `capabilities`.
    pub fn new(driver_url: &str, capabilities: Value) -> anyhow::Result<Session> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(120))
            .build();
        let rsp = call(
            &agent,
            "POST",
            &format!("{driver_url}/session"),
            Some(json!({ "capabilities": { "alwaysMatch": capabilities } })),
        )
        .context("chromedriver refused to start a browser session")?;
        let id = rsp["sessionId"]
            .as_str()
            .context("chromedriver answered without a sessionId")?;
        Ok(Session {
            base: format!("{driver_url}/session/{id}"),
            agent,
            closed: std::cell::Cell::new(false),
        })
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        call(&self.agent, method, &format!("{}{path}", self.base), body)
    }

    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.cmd("POST", "/url", Some(json!({ "url": url })))?;
        Ok(())
    }

    /// Run `script` (a function body; `arguments` holds `args`) and return its value.
    pub fn execute(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Like [`Self::execute`] for a script that calls `arguments[arguments.length-1](value)`.
    pub fn execute_async(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// How long scripts may run.
    pub fn set_script_timeout(&self, timeout: Duration) -> anyhow::Result<()> {
        self.cmd(
            "POST",
            "/timeouts",
            Some(json!({ "script": timeout.as_millis() as u64 })),
        )?;
        Ok(())
    }

    /// The element matching a CSS selector (its WebDriver reference).
    pub fn find(&self, css: &str) -> anyhow::Result<Value> {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .with_context(|| format!("no element matches {css:?}"))?;
        Ok(v)
    }

    /// Perform W3C actions (real input events through the browser).
    pub fn actions(&self, actions: Value) -> anyhow::Result<()> {
        self.cmd("POST", "/actions", Some(json!({ "actions": actions })))?;
        Ok(())
    }

    pub fn screenshot_png(&self) -> anyhow::Result<Vec<u8>> {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", None)?;
        let b64 = v.as_str().context("screenshot was not a string")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
    }
}

impl Session {
    /// Close the browser (idempotent).
    pub fn quit(&self) {
        if !self.closed.replace(true) {
            let _ = self.cmd("DELETE", "", None);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.quit();
    }
}

fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let req = agent.request(method, url);
    let rsp = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let v: Value = match rsp {
        Ok(r) => r.into_json()?,
        Err(ureq::Error::Status(code, r)) => {
            let v: Value = r.into_json().unwrap_or(Value::Null);
            let err = &v["value"];
            bail!(
                "WebDriver {method} {url}: HTTP {code}: {} {}",
                err["error"].as_str().unwrap_or(""),
                err["message"].as_str().unwrap_or("")
            );
        }
        Err(e) => return Err(e).with_context(|| format!("WebDriver {method} {url}")),
    };
    Ok(v["value"].clone())
}
