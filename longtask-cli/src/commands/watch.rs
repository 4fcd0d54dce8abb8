//! `longtask watch <id>`: follow a task until it ends, with a live progress bar on a terminal
//! and one line per change otherwise.

use std::{io::IsTerminal, process::ExitCode, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use longtask::{TaskId, TaskRecord, TaskStatus};

use super::Context;
use crate::{
    error::{Exit, Failure},
    render::{self, TaskJson},
};

/// How often the time left is redrawn between updates.
const REDRAW: Duration = Duration::from_secs(1);

pub(super) async fn run(id: TaskId, cx: &Context) -> Result<ExitCode, Failure> {
    let client = cx.client().await?;
    let mut updates = client.watch(id).await?;
    let mut view = if cx.json {
        View::Quiet
    } else if std::io::stdout().is_terminal() {
        View::Bar(None)
    } else {
        View::Lines(String::new())
    };
    let mut latest: Option<TaskRecord> = None;
    let mut redraw = tokio::time::interval(REDRAW);
    let last = loop {
        tokio::select! {
            update = updates.next() => match update {
                Some(Ok(task)) => {
                    view.show(&task, Utc::now());
                    if task.status.is_final() {
                        break task;
                    }
                    latest = Some(task);
                }
                Some(Err(err)) => {
                    view.abandon();
                    return Err(err.into());
                }
                None => {
                    view.abandon();
                    return Err(Failure::new(
                        Exit::Other,
                        format!("the updates of task {id} ended before it finished"),
                    ));
                }
            },
            _ = redraw.tick() => {
                if let Some(task) = &latest {
                    view.show(task, Utc::now());
                }
            }
        }
    };
    view.finish();
    let now = Utc::now();
    if cx.json {
        render::print_json(&TaskJson::new(&last, now));
    } else {
        println!("{}", summary(&last));
    }
    Ok(match last.status {
        TaskStatus::Succeeded => ExitCode::SUCCESS,
        TaskStatus::Cancelled => Exit::TaskCancelled.into(),
        _ => Exit::TaskFailed.into(),
    })
}

/// How the updates are shown.
enum View {
    /// `--json`: only the final record.
    Quiet,
    /// A terminal: one progress bar, redrawn in place.
    Bar(Option<ProgressBar>),
    /// Not a terminal: one line per change (the last line printed, to skip repeats).
    Lines(String),
}

impl View {
    fn show(&mut self, task: &TaskRecord, now: DateTime<Utc>) {
        match self {
            Self::Quiet => {}
            Self::Bar(bar) => {
                let bar = bar.get_or_insert_with(|| {
                    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                draw(bar, task, now);
            }
            Self::Lines(last) => {
                let line = describe(task, now);
                if line != *last {
                    println!("{} {line}", now.to_rfc3339_opts(SecondsFormat::Secs, true));
                    *last = line;
                }
            }
        }
    }

    /// Clears the bar, leaving the terminal to the summary.
    fn finish(&mut self) {
        if let Self::Bar(Some(bar)) = self {
            bar.finish_and_clear();
        }
    }

    /// Clears the bar before an error is printed.
    fn abandon(&mut self) {
        self.finish();
    }
}

/// The bar shows the task's progress, status, time left and message.
fn draw(bar: &ProgressBar, task: &TaskRecord, now: DateTime<Utc>) {
    let total = task.progress.as_ref().and_then(|p| p.total);
    let template = if total.is_some() {
        "{spinner:.green} [{bar:30.cyan/blue}] {percent:>3}% {pos}/{len} {wide_msg}"
    } else {
        "{spinner:.green} {wide_msg}"
    };
    if bar.length() != total {
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        match total {
            Some(total) => bar.set_length(total),
            None => bar.unset_length(),
        }
    }
    if let Some(progress) = &task.progress {
        bar.set_position(progress.step);
    }
    let mut message = render::status(task, now);
    if total.is_none() {
        if let Some(progress) = &task.progress {
            message.push_str(&format!(" · {}", render::progress(progress)));
        }
    }
    if let Some(eta) = render::eta(task, now) {
        message.push_str(&format!(" · {eta}"));
    }
    if let Some(text) = task.progress.as_ref().and_then(|p| p.message.as_deref()) {
        message.push_str(&format!(" · {}", render::clean(text)));
    }
    bar.set_message(message);
}

/// One line for a change: status, progress, time left, message.
fn describe(task: &TaskRecord, now: DateTime<Utc>) -> String {
    let mut line = render::status(task, now);
    if let Some(progress) = &task.progress {
        line.push(' ');
        line.push_str(&render::progress_with_message(progress));
    }
    if let Some(eta) = render::eta(task, now) {
        line.push_str(&format!(" ({eta})"));
    }
    line
}

/// What a finished task came to.
fn summary(task: &TaskRecord) -> String {
    let id = task.id;
    match task.status {
        TaskStatus::Succeeded => match task.output.as_deref() {
            Some(output) => format!("task {id} succeeded: {}", render::json_text(output)),
            None => format!("task {id} succeeded"),
        },
        TaskStatus::Cancelled => format!("task {id} cancelled"),
        _ => {
            let error = task
                .last_error
                .as_ref()
                .map(|e| format!(": {}", render::clean(&e.message)))
                .unwrap_or_default();
            let s = if task.attempt == 1 { "" } else { "s" };
            format!("task {id} failed after {} attempt{s}{error}", task.attempt)
        }
    }
}
