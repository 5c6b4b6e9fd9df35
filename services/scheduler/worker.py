"""Entry module for `biapp worker scheduler` (imported by the dramatiq CLI in each worker process)."""

from services.bootstrap import bootstrap

broker = bootstrap(("scheduler",)).broker
