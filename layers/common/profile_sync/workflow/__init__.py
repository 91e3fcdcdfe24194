"""The workflow's steps: what each Lambda task of the state machine does, over ports.

In the order a batch meets them: `quota` (the daily row quota), `bulk` (submit once, poll until it
ends), `single` (the single-update API, chunk by chunk), then for the job `report` (every row
accounted, the report, the final status) and `failure` (a batch's or the job's steps failed for
good). `batch_end` records how a batch ended; `common` holds what several steps share.

Each step takes the state it is given (pointers and small counters, never rows) and returns the
small state the next Choice needs. Steps that end a batch record its outcome themselves, because
only they hold Target's answer (failed ids can be far more than a state may carry). Each step
declares the ports it takes (a small dataclass); profile_sync.aws.ports builds just those.
"""
