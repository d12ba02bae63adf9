//! One conformance suite for the store, generic over the [`Store`] trait: every case
//! takes a fresh, empty store and checks what the rest of the instance relies on —
//! claims, exactly-once results, leases, cancels, idempotency, streamed chunks,
//! purging, enrollment, status, heartbeats, clusters, credentials and aliases, metric
//! batches, discovery runs, devices and schedules. Each
//! backend runs every case ([`conformance_suite!`] makes one test per case), so a
//! second backend is held to exactly the rules the first one is.

pub mod cases;

use openmid_instance::ecc::Store;
use std::sync::Arc;

/// A fresh store, and what must live as long as it (a temporary directory, a
/// database dropped afterwards).
pub struct Fresh {
    /// `None` when the backend's server is not there (the factory said so loudly).
    pub store: Option<Arc<dyn Store>>,
    pub _keep: Box<dyn std::any::Any + Send>,
}

impl Fresh {
    /// No store: the backend's server is missing on this machine.
    pub fn skipped() -> Self {
        Self {
            store: None,
            _keep: Box::new(()),
        }
    }
}

/// One `#[tokio::test]` per case for the backend `factory` makes (it is given the
/// case's name, for a database named after it).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let fresh = $factory(stringify!($case)).await;
                if let Some(store) = fresh.store.clone() {
                    $crate::conformance::cases::$case(store.clone()).await;
                    store.close().await;
                }
            }
        )*
    };
}

/// Every case, for [`conformance_suite!`].
#[macro_export]
macro_rules! every_conformance_case {
    ($factory:path) => {
        $crate::conformance_suite!($factory;
            claims_take_the_most_urgent_first_up_to_capacity,
            claims_take_only_what_is_assigned_to_the_mid,
            a_result_is_recorded_exactly_once,
            a_superseded_attempt_is_discarded,
            a_lapsed_lease_retries_then_fails,
            an_at_most_once_output_is_never_rerun,
            renewing_tells_which_jobs_are_no_longer_held,
            releasing_a_mids_leases_keeps_what_it_still_runs,
            cancelling_ready_running_and_finished_outputs,
            an_idempotency_key_makes_one_output,
            chunks_are_stored_once_and_only_for_the_holder,
            purging_takes_finished_records_in_batches_and_keeps_open_ones,
            enrollment_outcomes_and_status_history,
            a_heartbeat_from_a_new_process_says_so,
            clusters_keep_their_members_in_order,
            credentials_in_use_and_aliases_without_credentials,
            settings_round_trip,
            a_metric_batch_is_stored_once_and_sample_ids_are_never_reused,
            discovery_runs_file_devices_once_and_move_by_compare_and_set,
            discovery_schedules_fall_due_and_are_claimed_once,
            nodes_presence_and_orphans_across_nodes,
            a_named_lease_has_one_holder_until_it_lapses,
            the_audit_log_is_appended_filtered_paged_and_purged_by_age,
            a_traceparent_stays_with_its_output_and_input,
            express_records_and_their_audit_are_written_together_once,
            results_write_their_audit_entries_in_their_own_transaction,
            queue_depth_counts_waiting_and_running_outputs_by_topic,
            dashboard_sessions_expire_move_on_with_use_and_end_at_logout,
        );
    };
}
