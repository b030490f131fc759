//! A progress bar on stderr for runs longer than a second (hidden with `--quiet`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use msm::sampler::Progress;
use std::sync::Arc;
use std::time::Duration;

/// A sampler progress callback drawing a bar that appears after one second.
pub fn bar(quiet: bool, label: &str) -> (Option<Progress>, ProgressBar) {
    let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
    if quiet {
        return (None, pb);
    }
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps, {elapsed} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(label.to_string());
    let shown = pb.clone();
    let start = std::time::Instant::now();
    let cb: Progress = Arc::new(move |done, total| {
        if shown.length() != Some(total as u64) {
            shown.set_length(total as u64);
        }
        shown.set_position(done as u64);
        if shown.is_hidden() && start.elapsed() > Duration::from_secs(1) {
            shown.set_draw_target(ProgressDrawTarget::stderr());
        }
    });
    (Some(cb), pb)
}
