//! Fits rankings. Each fit runs on tokio's blocking pool, so fits of different jobs proceed in
//! parallel and none stalls the async threads; the answer goes back to the job's coordinator.

use std::time::Instant;

use engine::job::Job;
use engine::rank::Ranking;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::coordinator::CoordinatorMsg;
use crate::service::Context;

pub enum RankerMsg {
    /// Fit the answers a comparison job collected.
    Fit(Box<Job>, ActorRef<CoordinatorMsg>),
    /// Rank images by their direct scores.
    Scores(Vec<(String, f64)>, ActorRef<CoordinatorMsg>),
}

pub struct Ranker;

impl Actor for Ranker {
    type Msg = RankerMsg;
    type State = Context;
    type Arguments = Context;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, ctx: Context) -> Result<Context, ActorProcessingErr> {
        Ok(ctx)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        ctx: &mut Context,
    ) -> Result<(), ActorProcessingErr> {
        let (fit, reply_to): (Box<dyn FnOnce() -> Ranking + Send>, _) = match message {
            RankerMsg::Fit(job, reply_to) => (Box::new(move || job.ranking()), reply_to),
            RankerMsg::Scores(scored, reply_to) => (
                Box::new(move || {
                    let (names, scores): (Vec<String>, Vec<f64>) = scored.into_iter().unzip();
                    Ranking::from_scores(&names, &scores)
                }),
                reply_to,
            ),
        };
        let metrics = ctx.metrics.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let ranking = tokio::task::spawn_blocking(fit)
                .await
                .map_err(|e| format!("fit panicked: {e}"));
            metrics.ranker_fit.observe(started.elapsed().as_secs_f64());
            let _ = reply_to.cast(CoordinatorMsg::Ranked(ranking));
        });
        Ok(())
    }
}
