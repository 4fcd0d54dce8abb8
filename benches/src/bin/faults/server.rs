//! The run's own database: a throwaway Postgres cluster or redis-server that the supervisor owns
//! (so that it can stop it abruptly and start it again on the same data), or a SQLite file.
//!
//! Everything lives in the run's folder. A watchdog shell in its own process group stops the
//! servers once the supervisor is gone, however it ended, and removes the folder unless a file
//! named `keep` is in it. The helpers that find and start Postgres follow the backend tests'
//! (`longtask-sqlx/tests/postgres/server.rs`): Postgres runs as the `postgres` user when the
//! supervisor runs as root, listens on 127.0.0.1 only, and its binaries are found where Debian
//! puts them.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::Kind;

const HOW_TO_GET_POSTGRES: &str = "install the PostgreSQL server (`apt-get install postgresql` on \
     Debian/Ubuntu) or set PG_BINDIR to the folder holding initdb, postgres and pg_ctl";
const HOW_TO_GET_REDIS: &str = "install redis-server (`apt-get install redis-server`)";

/// Stops the servers and removes the folder (unless it holds `keep`) once pid `$2` is gone.
const WATCHDOG: &str = r#"
dir="$1"; parent="$2"
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
pid=$(head -n 1 "$dir/pg/data/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then kill -QUIT "$pid" 2>/dev/null; fi
pid=$(cat "$dir/redis/redis.pid" 2>/dev/null)
if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null; fi
sleep 1
if [ ! -e "$dir/keep" ]; then rm -rf "$dir"; fi
"#;

/// The run's folder, watched: see the module docs.
pub(crate) fn run_dir() -> Result<PathBuf, String> {
    let dir = tempfile::Builder::new()
        .prefix("longtask-faults-")
        .tempdir()
        .map_err(|e| format!("creating the run's folder: {e}"))?
        .keep();
    // The postgres user must reach its data folder inside.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("opening up {}: {e}", dir.display()))?;
    let mut watchdog = Command::new("sh");
    watchdog
        .arg("-c")
        .arg(WATCHDOG)
        .arg("longtask-faults-watchdog")
        .arg(&dir)
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // Never waited for: it outlives the supervisor by design.
    #[allow(clippy::zombie_processes)]
    watchdog
        .spawn()
        .map_err(|e| format!("starting the watchdog: {e}"))?;
    Ok(dir)
}

/// The database of one run.
pub(crate) enum Server {
    Sqlite { url: String },
    Postgres(Postgres),
    Redis(Redis),
}

impl Server {
    /// Starts the server of `kind` in `dir`.
    pub(crate) fn start(kind: Kind, dir: &Path) -> Result<Self, String> {
        match kind {
            Kind::Sqlite => Ok(Self::Sqlite {
                url: format!("sqlite://{}/tasks.db", dir.display()),
            }),
            Kind::Postgres => Postgres::start(dir).map(Self::Postgres),
            Kind::Redis => Redis::start(dir).map(Self::Redis),
        }
    }

    /// The URL workers connect to.
    pub(crate) fn url(&self) -> String {
        match self {
            Self::Sqlite { url } => url.clone(),
            Self::Postgres(pg) => format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port),
            Self::Redis(redis) => format!("redis://127.0.0.1:{}/", redis.port),
        }
    }

    /// How the server is stopped abruptly, or `None` when there is no server.
    pub(crate) fn crash_name(&self) -> Option<&'static str> {
        match self {
            Self::Sqlite { .. } => None,
            Self::Postgres(_) => Some("pg_ctl stop -m immediate"),
            Self::Redis(_) => Some("redis-server SIGKILL (AOF, appendfsync always)"),
        }
    }

    /// Stops the server abruptly.
    pub(crate) fn crash(&mut self) -> Result<(), String> {
        match self {
            Self::Sqlite { .. } => Ok(()),
            Self::Postgres(pg) => pg.stop("immediate"),
            Self::Redis(redis) => redis.kill(),
        }
    }

    /// Starts it again on the same data and port, and waits until it answers.
    pub(crate) fn restart(&mut self) -> Result<(), String> {
        match self {
            Self::Sqlite { .. } => Ok(()),
            Self::Postgres(pg) => pg.spawn(),
            Self::Redis(redis) => redis.spawn(),
        }
    }

    /// Stops the server for good at the end of the run.
    pub(crate) fn stop(&mut self) {
        let result = match self {
            Self::Sqlite { .. } => Ok(()),
            Self::Postgres(pg) => pg.stop("fast"),
            Self::Redis(redis) => redis.kill(),
        };
        if let Err(message) = result {
            eprintln!("faults: stopping the server: {message}");
        }
    }
}

/// A Postgres cluster in `<dir>/pg`, run as a child of the supervisor.
pub(crate) struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    run_as: Option<&'static str>,
    port: u16,
    child: Option<Child>,
}

impl Postgres {
    fn start(dir: &Path) -> Result<Self, String> {
        let bin = postgres_bin_dir()?;
        let run_as = running_as_root().then_some("postgres");
        let pg_dir = dir.join("pg");
        fs::create_dir(&pg_dir).map_err(|e| format!("creating {}: {e}", pg_dir.display()))?;
        if let Some(user) = run_as {
            run(Command::new("chown").arg(format!("{user}:")).arg(&pg_dir))?;
        }
        let mut initdb = as_user(run_as, &bin.join("initdb"));
        initdb.arg("-D").arg(pg_dir.join("data")).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(&mut initdb)?;
        let mut pg = Self {
            dir: pg_dir,
            bin,
            run_as,
            port: free_port()?,
            child: None,
        };
        pg.spawn()?;
        Ok(pg)
    }

    /// Starts the postmaster (durable settings: fsync and synchronous commit on, the defaults)
    /// and waits until it accepts connections.
    fn spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .map_err(|e| format!("opening the server log: {e}"))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("opening the server log: {e}"))?;
        let mut postgres = as_user(self.run_as, &self.bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-k")
            .arg(&self.dir)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        self.child = Some(
            postgres
                .spawn()
                .map_err(|e| format!("starting postgres: {e}; {HOW_TO_GET_POSTGRES}"))?,
        );
        self.wait_ready()
    }

    /// Waits until line 8 of `postmaster.pid` reads `ready` (as `pg_ctl -w` checks).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pid_file =
                fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap_or_default();
            if pid_file.lines().nth(7).is_some_and(|l| l.trim() == "ready") {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                let log = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                return Err(format!("postgres did not start; its log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `pg_ctl stop -m <mode>`, waiting until the server is gone.
    fn stop(&mut self, mode: &str) -> Result<(), String> {
        let mut pg_ctl = as_user(self.run_as, &self.bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", mode, "-w", "stop"]);
        run(&mut pg_ctl)?;
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        Ok(())
    }
}

/// A redis-server in `<dir>/redis` with AOF on, fsynced at every write.
pub(crate) struct Redis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start(dir: &Path) -> Result<Self, String> {
        let redis_dir = dir.join("redis");
        fs::create_dir(&redis_dir).map_err(|e| format!("creating {}: {e}", redis_dir.display()))?;
        let mut redis = Self {
            dir: redis_dir,
            port: free_port()?,
            child: None,
        };
        redis.spawn()?;
        Ok(redis)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let dir = &self.dir;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .arg("--pidfile")
            .arg(dir.join("redis.pid"))
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting redis-server: {e}; {HOW_TO_GET_REDIS}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !answers_ping(self.port) {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                let log = fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                return Err(format!("redis-server did not start; its log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL: what Redis has acknowledged is in the AOF (appendfsync always), nothing else.
    fn kill(&mut self) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .map_err(|e| format!("killing redis-server: {e}"))?;
            let _ = child.wait();
        }
        Ok(())
    }
}

/// Whether a Redis answers PING (not while it is still loading its AOF) on `port`.
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("+PONG")
}

/// The folder holding `initdb`, `postgres` and `pg_ctl`: `PG_BINDIR`, `pg_config --bindir`,
/// `PATH`, or the newest `/usr/lib/postgresql/<version>/bin` (Debian's layout, not on PATH).
fn postgres_bin_dir() -> Result<PathBuf, String> {
    let has_server = |dir: &Path| {
        ["postgres", "initdb", "pg_ctl"]
            .iter()
            .all(|bin| dir.join(bin).is_file())
    };
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "PG_BINDIR={} holds no initdb/postgres/pg_ctl; {HOW_TO_GET_POSTGRES}",
                dir.display()
            ))
        };
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    if let Some(dir) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| has_server(dir))
    {
        return Ok(dir);
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
        .ok_or_else(|| format!("no PostgreSQL server binaries found; {HOW_TO_GET_POSTGRES}"))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("running {command:?}: {e}; {HOW_TO_GET_POSTGRES}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}
