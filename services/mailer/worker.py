"""Entry module for `biapp worker mailer` (imported by the dramatiq CLI in each worker process)."""

from services.bootstrap import bootstrap

broker = bootstrap(("mailer",)).broker
