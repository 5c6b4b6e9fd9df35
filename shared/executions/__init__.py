"""One owner for an execution's life, whichever service calls it.

* `states`   — the state machine: each move one guarded UPDATE that also timestamps it.
* `creation` — the execution row (who it is for, when it is due), for the API and the dispatcher.
* `leases`   — who works on a run right now: claim, renew (a heartbeat thread), release, take over.
* `ledger`   — one row per (execution, recipient); closing a run from it.
* `requeue`  — handing a run back to the pipeline (the sweeper's bump) and cancelling unstarted runs.

The API, scheduler, renderer and mailer import this package; none of them writes an
execution's status or lease columns itself.
"""

from shared.executions.creation import create_execution, new_execution_row, planned_recipients
from shared.executions.leases import (
    Claim,
    LeaseKeeper,
    claim_alert_delivery,
    claim_failure_notices,
    claim_render,
    claim_send,
    grant_grace,
    new_token,
    release,
    renew,
)
from shared.executions.ledger import (
    close_from_ledger,
    give_up_notices,
    insert_deliveries,
    insert_failure_notices,
    ledger_row,
    record_accepted,
    record_delivery,
)
from shared.executions.requeue import bump, cancel_unstarted
from shared.executions.states import (
    ACTIVE,
    MAX_ERROR_LENGTH,
    TERMINAL,
    TRANSITIONS,
    check_transition,
    fail,
    fail_and_notify,
    move,
)

__all__ = [
    "ACTIVE",
    "MAX_ERROR_LENGTH",
    "TERMINAL",
    "TRANSITIONS",
    "Claim",
    "LeaseKeeper",
    "bump",
    "cancel_unstarted",
    "claim_alert_delivery",
    "claim_failure_notices",
    "check_transition",
    "claim_render",
    "claim_send",
    "close_from_ledger",
    "create_execution",
    "fail",
    "fail_and_notify",
    "give_up_notices",
    "insert_failure_notices",
    "grant_grace",
    "insert_deliveries",
    "ledger_row",
    "move",
    "new_execution_row",
    "new_token",
    "planned_recipients",
    "record_accepted",
    "record_delivery",
    "release",
    "renew",
]
