//! The fixed values of the service's metric labels that its own code decides, each type listing
//! every value it takes, so that [`super::metrics::Metrics::new`] exports each series at 0 from
//! the start (a counter that first appears at 1 shows no increase to `rate()` or `increase()`).

/// An enum of label values, with each value's `label()` and all of them in `LABELS`.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$value_doc:meta])* $value:ident => $label:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$value_doc])* $value,)+
        }

        impl $name {
            pub const LABELS: &'static [&'static str] = &[$($label,)+];

            pub fn label(self) -> &'static str {
                match self {
                    $($name::$value => $label,)+
                }
            }
        }
    };
}

label_values! {
    /// How a job ended, the `outcome` of `qrank_job_completed_total`.
    JobOutcome {
        /// Ranked, and the result published.
        Ranked => "ranked",
        /// Answered with a result that states the failure.
        Failed => "failed",
        /// A result it already had, published again (a redelivery whose ack was lost).
        Republished => "republished",
        /// Returned to the queue, for this or another replica to take.
        Requeued => "requeued",
        /// Its coordinator crashed.
        Crashed => "crashed",
    }
}

label_values! {
    /// Whether the broker confirmed a message, the `outcome` of `qrank_amqp_published_total`.
    Published {
        Confirmed => "confirmed",
        /// Refused (nack), not confirmed in time, or not sent for want of a connection.
        Failed => "failed",
    }
}

label_values! {
    /// Which time a shared group was put on the queue, the `attempt` of
    /// `qrank_shared_groups_published_total`.
    SharedAttempt {
        First => "first",
        /// Again, after its answer was late.
        Again => "again",
    }
}

label_values! {
    /// What became of a shared group this replica took, the `outcome` of
    /// `qrank_shared_groups_served_total`.
    SharedServed {
        /// Answered with the comparator's outcome.
        Answered => "answered",
        /// Answered with an error: an image could not be read, or the model failed.
        Failed => "failed",
        /// Unreadable, and dead-lettered.
        Poison => "poison",
        /// Returned to the queue: its answer could not be published, or the model fails on
        /// every device of this replica.
        Requeued => "requeued",
    }
}
