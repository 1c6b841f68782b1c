//! Log capture shared by the backend sim tests: the display and sound
//! tests assert that refusals are logged with guest, device and reason.

/// Every log line of this test process (warn and up, or what RUST_LOG
/// says), without colours, so that tests can check what the gateway logs.
/// Installed as the process's global subscriber on first use: the backend
/// logs from its own tasks on any worker thread, which a thread-local
/// subscriber would miss.
pub fn logs() -> &'static Logs {
    static LOGS: std::sync::OnceLock<&'static Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static Logs = Box::leak(Box::new(Logs(std::sync::Mutex::new(Vec::new()))));
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || LogWriter(logs))
            .try_init();
        logs
    })
}

pub struct Logs(std::sync::Mutex<Vec<u8>>);

impl Logs {
    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The first line containing every one of `parts`.
    pub fn find(&self, parts: &[&str]) -> Option<String> {
        self.lines()
            .into_iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
    }
}

struct LogWriter(&'static Logs);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
             .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        // Still visible when asked for, as with the test writer before.
        if std::env::var_os("RUST_LOG").is_some() {
            eprint!("{}", String::from_utf8_lossy(b));
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
