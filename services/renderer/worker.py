"""Entry module for `biapp worker renderer` (imported by the dramatiq CLI in each worker process)."""

from services.bootstrap import bootstrap

broker = bootstrap(("renderer",)).broker
