//! A Postgres server for the tests: `DATABASE_URL` when set, otherwise a throwaway cluster of
//! this test process, started on first use.
//!
//! The throwaway cluster lives in a fresh folder under the system temp dir, listens on a free
//! port of 127.0.0.1 only (and a Unix socket in its folder), and runs as the `postgres` user when
//! the tests run as root (Postgres refuses root). It is watched by a small shell process in its
//! own process group: when this test process exits, however it exits (normally, by panic, or
//! killed), the watchdog stops the server by its pid within a second and deletes the folder.
//! The server runs with `fsync=off`: the tests check behaviour, not durability.

use std::{
    fs,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// What to install when no server can be found.
const HOW_TO_GET_ONE: &str = "install the PostgreSQL server (`apt-get install postgresql` on \
     Debian/Ubuntu), or set DATABASE_URL to a database the tests may create schemas in";

/// Stops the server and removes its folder once the test process (pid `$4`) is gone.
const WATCHDOG: &str = r#"
dir="$1"; postgres="$2"; port="$3"; parent="$4"; run_as="$5"
if [ -n "$run_as" ]; then
    runuser -u "$run_as" -- "$postgres" -D "$dir/data" -k "$dir" -h 127.0.0.1 -p "$port" \
        -c fsync=off -c full_page_writes=off -c max_connections=300 >"$dir/server.log" 2>&1 &
else
    "$postgres" -D "$dir/data" -k "$dir" -h 127.0.0.1 -p "$port" \
        -c fsync=off -c full_page_writes=off -c max_connections=300 >"$dir/server.log" 2>&1 &
fi
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null; fi
wait
rm -rf "$dir"
"#;

/// The URL of the database the tests use.
pub(crate) fn database_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => start(),
    })
}

/// A fresh schema name for one test.
pub(crate) fn fresh_schema() -> String {
    format!("t_{}", uuid::Uuid::now_v7().simple())
}

fn start() -> String {
    let bin = server_bin_dir();
    let run_as = running_as_root().then_some("postgres");
    let dir = tempfile::Builder::new()
        .prefix("longtask-pg-")
        .tempdir()
        .expect("creating a folder for the test cluster")
        .keep();
    if let Some(user) = run_as {
        run(Command::new("chown").arg(format!("{user}:")).arg(&dir));
    }
    let data = dir.join("data");
    let mut initdb = as_user(run_as, &bin.join("initdb"));
    initdb.arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    run(&mut initdb);

    let port = free_port();
    let mut watchdog = Command::new("sh");
    watchdog
        .arg("-c")
        .arg(WATCHDOG)
        .arg("longtask-pg-watchdog")
        .arg(&dir)
        .arg(bin.join("postgres"))
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .arg(run_as.unwrap_or(""))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: signals sent to the test's group do not stop the watchdog
        // before it has stopped the server.
        .process_group(0);
    // Never waited for: the watchdog outlives this process by design, to stop the server.
    #[allow(clippy::zombie_processes)]
    watchdog
        .spawn()
        .expect("starting the test cluster's watchdog");
    wait_ready(&dir);
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// The folder holding `initdb` and `postgres`: `PG_BINDIR`, `pg_config --bindir`, `PATH`, or the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian's layout, not on PATH).
fn server_bin_dir() -> PathBuf {
    let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(
            has_server(&dir),
            "PG_BINDIR={} holds no initdb/postgres; {HOW_TO_GET_ONE}",
            dir.display()
        );
        return dir;
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
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!("no PostgreSQL server binaries (initdb, postgres) found; {HOW_TO_GET_ONE}"),
    }
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

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?} failed: {e}; {HOW_TO_GET_ONE}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

/// Waits until the server says it accepts connections (line 8 of `postmaster.pid` reads
/// `ready`, as `pg_ctl -w` checks).
fn wait_ready(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pid_file = fs::read_to_string(dir.join("data/postmaster.pid")).unwrap_or_default();
        if pid_file.lines().nth(7).is_some_and(|l| l.trim() == "ready") {
            return;
        }
        if Instant::now() > deadline {
            let log = fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("the test cluster did not start within 60 s; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
