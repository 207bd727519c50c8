//! The `eventflow` command. All logic lives in the library; this maps outcomes to exit codes.

use mimalloc::MiMalloc;

// Workers exchange owned rows between threads; mimalloc handles cross-thread frees well.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    // A panicking timely worker leaves its peers waiting for ever; exit the whole process instead.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // In a cluster, timely's threads panic when another process dies: not a bug here.
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if let Some(lost) = eventflow::runtime::cluster::peer_lost(message) {
            eprintln!("error: {lost}");
            std::process::exit(2);
        }
        default_hook(info);
        eprintln!("error: eventflow hit an internal bug (a panic); please report it with the pipeline and input");
        std::process::exit(101);
    }));
    eventflow::cli::main()
}
