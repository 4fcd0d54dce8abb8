//! Throwaway servers for longtask's own tests (an unpublished crate).
//!
//! Throwaway servers that a test stops and starts again: a Postgres cluster (stopped the way a
//! crash stops it, `pg_ctl stop -m immediate`, and started again on the same data folder and
//! port) and a `redis-server` (killed with SIGKILL and started again on the same port and AOF
//! file, or frozen with SIGSTOP and thawed with SIGCONT).
//!
//! Each server gets a watchdog shell in its own process group: once the test process is gone,
//! however it ended, the watchdog stops the server and removes its folder. Dropping the handle
//! does the same at once.

use std::{
    fs,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const HOW_TO_GET_THEM: &str = "install the servers (`apt-get install postgresql redis-server`); \
     this test needs servers of its own, which it stops and starts";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

fn temp_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("creating a folder for a test server")
        .keep()
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?} failed: {e}; {HOW_TO_GET_THEM}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `script` (with `$1` = the test process's pid and the given arguments after it) in a
/// shell of its own process group, never waited for: it outlives this process by design.
#[allow(clippy::zombie_processes)]
fn watchdog(script: &str, args: &[&str]) {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; {script}"
        ))
        .arg("longtask-outage-watchdog")
        .arg(std::process::id().to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("starting a watchdog shell");
}

/// A Postgres cluster of this test alone.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as: Option<&'static str>,
}

impl Postgres {
    /// Creates and starts a cluster on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let bin = pg_bin_dir();
        let run_as = running_as_root().then_some("postgres");
        let dir = temp_dir("longtask-outage-pg-");
        if let Some(user) = run_as {
            run(Command::new("chown").arg(format!("{user}:")).arg(&dir));
        }
        let server = Self {
            port: free_port(),
            dir,
            bin,
            run_as,
        };
        run(server.command("initdb").arg("-D").arg(server.data()).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]));
        let pg_ctl = server.bin.join("pg_ctl");
        let dir = server.dir.to_string_lossy().into_owned();
        watchdog(
            "if [ -n \"$4\" ]; then runuser -u \"$4\" -- \"$2\" stop -D \"$3/data\" -m immediate; \
             else \"$2\" stop -D \"$3/data\" -m immediate; fi; rm -rf \"$3\"",
            &[&pg_ctl.to_string_lossy(), &dir, run_as.unwrap_or("")],
        );
        server.resume();
        server
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop(&self) {
        run(self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w"]));
    }

    /// Starts the server again, on the same data folder and port; returns once it accepts
    /// connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        run(self
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options])
            // pg_ctl's server outlives it; keep it from holding this process's output pipes.
            .stdout(Stdio::null())
            .stderr(Stdio::null()));
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate"])
            .output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The folder holding `initdb`, `pg_ctl` and `postgres`: `PG_BINDIR`, `pg_config --bindir`,
/// `PATH`, or the newest `/usr/lib/postgresql/<version>/bin`.
fn pg_bin_dir() -> PathBuf {
    let has_server = |dir: &Path| {
        ["postgres", "initdb", "pg_ctl"]
            .iter()
            .all(|p| dir.join(p).is_file())
    };
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return dir;
        }
    }
    if let Some(dir) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| has_server(dir))
    {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("no PostgreSQL server binaries found; {HOW_TO_GET_THEM}"))
}

/// A `redis-server` of this test alone, with an AOF written at every command (so that a kill
/// loses nothing).
#[derive(Debug)]
pub struct Redis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts a server on a free port of 127.0.0.1.
    pub fn start() -> Self {
        let dir = temp_dir("longtask-outage-redis-");
        let dir_text = dir.to_string_lossy().into_owned();
        watchdog(
            "pid=$(cat \"$2/pid\" 2>/dev/null); \
             if [ -n \"$pid\" ]; then kill -CONT \"$pid\"; kill -KILL \"$pid\"; fi; rm -rf \"$2\"",
            &[&dir_text],
        );
        let mut server = Self {
            dir,
            port: free_port(),
            child: None,
        };
        server.resume();
        server
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        run(Command::new("kill").arg(signal).arg(pid.to_string()));
    }

    /// Starts the server (again), on the same port and AOF; returns once it answers PING.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the server already runs");
        let dir = &self.dir;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server failed: {e}; {HOW_TO_GET_THEM}"));
        fs::write(dir.join("pid"), child.id().to_string()).expect("writing the pid file");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start within 30 s; its log:\n{}",
                fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn answers_ping(&self) -> bool {
        use std::io::{BufRead, BufReader, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("+PONG")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.thaw();
        }
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
