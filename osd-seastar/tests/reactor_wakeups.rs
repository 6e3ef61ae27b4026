//! The shard's reactor (our patched glommio, `vendor/README.md`) keeps its
//! timers and its ring-link poll armed across loops. These tests check the
//! two things a wrongly kept arming would break, each with a deadline so a
//! lost wakeup fails instead of hanging: a parked shard wakes for a message
//! from another thread, and for its own timers.

use std::sync::mpsc;
use std::time::Duration;

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};

/// Long enough for a loaded 2-core CI machine; a lost wakeup never ends.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn a_parked_shard_wakes_for_every_message_from_another_thread() {
    const MESSAGES: u32 = 300;
    let (sender, receiver) = shared_channel::new_bounded::<u32>(4);
    let (done_tx, done_rx) = mpsc::channel();
    let receiving = LocalExecutorBuilder::new(Placement::Unbound)
        .name("wake-receiver")
        .spawn(move || async move {
            let receiver = receiver.connect().await;
            let mut next = 0;
            while let Some(n) = receiver.recv().await {
                assert_eq!(n, next, "messages arrive in order");
                next += 1;
            }
            done_tx.send(next).unwrap();
        })
        .unwrap();
    let sending = LocalExecutorBuilder::new(Placement::Unbound)
        .name("wake-sender")
        .spawn(move || async move {
            let sender = sender.connect().await;
            for n in 0..MESSAGES {
                // Gaps of 0-2 ms: the receiver parks between most messages,
                // and its own preemption timer fires now and then.
                if n % 3 != 0 {
                    glommio::timer::sleep(Duration::from_micros(u64::from(n % 7) * 300)).await;
                }
                sender.send(n).await.unwrap();
            }
        })
        .unwrap();
    // Wait on the receiver first: a parked receiver also blocks the sender
    // once the bounded channel is full.
    let received = done_rx.recv_timeout(DEADLINE).expect("the receiving shard missed a wakeup and stayed parked");
    assert_eq!(received, MESSAGES);
    sending.join().unwrap();
    receiving.join().unwrap();
}

#[test]
fn a_parked_shard_wakes_for_its_timers() {
    let (done_tx, done_rx) = mpsc::channel();
    let shard = LocalExecutorBuilder::new(Placement::Unbound)
        .name("wake-timers")
        .spawn(move || async move {
            // Timers of different lengths, some of them concurrent, so a
            // sooner timer has to replace an armed later one.
            for round in 0..100u64 {
                let long = glommio::spawn_local(glommio::timer::sleep(Duration::from_millis(2 + round % 3)));
                glommio::timer::sleep(Duration::from_micros(100 + (round % 5) * 200)).await;
                long.await;
            }
            done_tx.send(()).unwrap();
        })
        .unwrap();
    done_rx.recv_timeout(DEADLINE).expect("the shard missed a timer and stayed parked");
    shard.join().unwrap();
}
