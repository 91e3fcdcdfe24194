"""The functions' code, loaded in-process as Lambda would run it: functions/<name>/app.py imported afresh
(a cold start), with a logger and a metric set of its own."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from types import ModuleType

from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.utilities import parameters

from profile_sync_local.stack.project import ROOT, WORKFLOW_FUNCTIONS


def load_function(folder: str) -> ModuleType:
    """Import functions/<folder>/app.py afresh, as a cold start would (fresh Powertools logger too)."""
    service_logger = logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "service_undefined"))
    service_logger.handlers.clear()
    for attribute in ("init", "powertools_handler"):
        if hasattr(service_logger, attribute):
            delattr(service_logger, attribute)
    # Each warm container builds its ports once; a fresh import is a fresh container. So are
    # Powertools' parameter providers: their AWS clients would still call an earlier run's server.
    from profile_sync.aws import ports  # noqa: PLC0415 - after the environment is set

    ports.clear()
    parameters.clear_caches()
    module_name = f"handler_{folder}"
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / folder / "app.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"functions/{folder}/app.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    _own_logger(module, folder)
    _own_metrics(module)
    return module


def _own_logger(module: ModuleType, folder: str) -> None:
    """Give the function's Powertools Logger a stdlib logger of its own, as in Lambda.

    In one process every function's Logger would share the service's stdlib logger, and each
    import replaces its handler: the steps would log through the last module's formatter and lose
    their own keys (Lambda context, correlation id). Two invocations of one function at once still
    share a module here, which Lambda never does.
    """
    powertools_logger = getattr(module, "logger", None)
    if powertools_logger is None:
        return
    own = logging.getLogger(f"profile-sync-local.{folder}")
    own.handlers = [powertools_logger.logger_handler]
    own.propagate = False
    own.setLevel(logging.getLogger(powertools_logger.service).level or logging.INFO)
    powertools_logger._logger = own


class _PerThreadMetrics(AmazonCloudWatchEMFProvider):
    """A Powertools metrics provider whose metric set belongs to the thread that adds to it.

    Powertools shares one metric set across the process, which in Lambda serves one invocation
    at a time. Here invocations run as threads of one process: one would flush (or fail to flush:
    "Must contain at least one metric") the metrics another is still adding.
    """

    def _state(self) -> threading.local:
        local = self.__dict__.setdefault("_per_thread", threading.local())
        if not hasattr(local, "metric_set"):
            local.metric_set, local.dimension_sets, local.metadata_set = {}, [], {}
            local.dimension_set = dict(self.default_dimensions)
        return local


def _thread_attribute(name: str) -> property:
    return property(
        lambda self: getattr(self._state(), name), lambda self, value: setattr(self._state(), name, value)
    )


for _name in ("metric_set", "dimension_set", "dimension_sets", "metadata_set"):
    setattr(_PerThreadMetrics, _name, _thread_attribute(_name))


def _own_metrics(module: ModuleType) -> None:
    metrics = getattr(module, "metrics", None)
    provider = getattr(metrics, "provider", None)
    if type(provider) is AmazonCloudWatchEMFProvider:
        provider.__class__ = _PerThreadMetrics


def workflow_handlers() -> dict:
    return {name: _with_package_logs(load_function(folder)) for name, folder in WORKFLOW_FUNCTIONS.items()}


def _with_package_logs(module: ModuleType):
    """The domain package's log lines go through the running function's handler, as in its own process.

    Functions that call Target hand the "profile_sync" logger their handler at import; in one
    process the last import would win for every function.
    """
    handler = module.lambda_handler
    if not getattr(getattr(module, "function", None), "calls_target", False):
        return handler
    package = logging.getLogger("profile_sync")

    def invoke(event: dict, context: object) -> dict:
        package.handlers = [module.logger.logger_handler]
        return handler(event, context)

    return invoke
