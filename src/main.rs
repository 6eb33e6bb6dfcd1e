use std::io::{IsTerminal, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[rocket::main]
async fn main() -> ExitCode {
    return_large_blocks();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,rocket=warn")),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck();
    }

    let rocket = match ferrochat::build().await {
        Ok(rocket) => rocket,
        Err(err) => {
            tracing::error!(error = %err, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    match rocket.launch().await {
        Ok(stopped) => {
            ferrochat::finish(&stopped).await;
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "server stopped");
            ExitCode::FAILURE
        }
    }
}

/// glibc raises its mmap threshold to the size of the largest block freed, and from then
/// on keeps blocks that large in the arena of the thread that freed them. Argon2 takes
/// 19 MiB for each password hash, on whichever blocking thread runs it: after a flood of
/// sign-ins every arena held one, and the server stayed 500 MB larger. A fixed threshold
/// keeps blocks of 1 MiB and more mapped on their own, and unmapped when freed.
fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets a tunable of glibc's allocator under glibc's own lock; it
    // touches no memory of ours.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// `ferrochat healthcheck`: asks the running server's `/health` on this machine, for a
/// container's HEALTHCHECK (slim images have no curl).
fn healthcheck() -> ExitCode {
    let port = ferrochat::config::figment()
        .extract_inner::<u16>("port")
        .unwrap_or(5000);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let answer = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })();
    match answer {
        Ok(text) if text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200") => {
            ExitCode::SUCCESS
        }
        Ok(text) => {
            eprintln!("unhealthy: {}", text.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("unhealthy: {err}");
            ExitCode::FAILURE
        }
    }
}
