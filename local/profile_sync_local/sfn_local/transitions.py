"""State transitions of an execution, counted as Step Functions bills them."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any
from unittest import mock

from moto.stepfunctions.parser.asl.component.common.retry.retry_outcome import RetryOutcome
from moto.stepfunctions.parser.asl.component.state import state as _state_mod
from moto.stepfunctions.parser.asl.component.state.exec import execute_state as _execute_state


class TransitionCounter:
    """State transitions of an execution and of its Distributed Map's child executions.

    AWS bills a Standard workflow per state transition: each state entered, each retry of a state,
    and one for each child execution a Distributed Map starts, whose own states are billed too.
    moto runs the children without histories of their own, so states are counted where they are
    entered; a state inside a child knows its item index from the context object ($$.Map).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.parent = 0
        self.children: Counter[int] = Counter()  # item index -> states entered and retries

    def count(self, env: Any) -> None:
        item = env.states.context_object.context_object_data.get("Map")
        with self._lock:
            if item:
                self.children[item["Item"]["Index"]] += 1
            else:
                self.parent += 1

    def totals(self) -> dict[str, int]:
        with self._lock:
            child_states = sum(self.children.values())
            started = len(self.children)
            return {
                "total": self.parent + started + child_states,
                "parent": self.parent,
                "child_executions": started,
                "child_states": child_states,
            }

    def patches(self) -> list[Any]:
        counter = self
        eval_body = _state_mod.CommonStateField._eval_body
        handle_retry = _execute_state.ExecutionState._handle_retry

        def entered(self: Any, env: Any) -> Any:
            counter.count(env)
            return eval_body(self, env)

        def retried(self: Any, env: Any, failure_event: Any) -> Any:
            outcome = handle_retry(self, env, failure_event)
            if outcome == RetryOutcome.CanRetry:
                counter.count(env)
            return outcome

        return [
            mock.patch.object(_state_mod.CommonStateField, "_eval_body", entered),
            mock.patch.object(_execute_state.ExecutionState, "_handle_retry", retried),
        ]
