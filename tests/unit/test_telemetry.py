"""The metric registry, the code that emits metrics, and the stack's dashboard and alarms agree.

Static: the templates are parsed (CloudFormation tags as {"Sub": ...}); the dashboard and the alarms
(observability.yaml, nested in template.yaml) are read with each of their Parameters replaced by what
template.yaml passes for it, and the dashboard body as the JSON CloudFormation would produce. The
handlers' source is scanned with `ast`. The workflow test (tests/workflow/test_observability.py)
checks that the code really emits them.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from profile_sync import telemetry
from profile_sync_local.stack.project import ROOT, template

NAMESPACE = telemetry.NAMESPACE
SERVICE = "profile-sync"
PSEUDO_PARAMETERS = {"AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::StackName", "AWS::URLSuffix"}


def expected_dimensions(name: str) -> frozenset[str]:
    return frozenset({"service", *telemetry.EXTRA_DIMENSIONS.get(name, ())})


# ------------------------------------------------------------------------------------- template
OBSERVABILITY = "Observability"  # the nested application holding the dashboard and the alarms


def nested() -> dict:
    """observability.yaml, as the stack's Observability application names it."""
    return template(template()["Resources"][OBSERVABILITY]["Properties"]["Location"])


def passed() -> dict[str, object]:
    """Parameter -> what template.yaml passes the observability template for it."""
    return template()["Resources"][OBSERVABILITY]["Properties"]["Parameters"]


def through(value: object) -> object:
    """A value of the observability template in template.yaml's terms: each Ref to one of its
    Parameters becomes what the stack passes for it ({"Ref": "IngestFunction"}, a literal, ...)."""
    if isinstance(value, list):
        return [through(v) for v in value]
    if isinstance(value, dict):
        if list(value) == ["Ref"] and value["Ref"] in nested()["Parameters"]:
            return passed()[value["Ref"]]
        return {k: through(v) for k, v in value.items()}
    return value


def resources(kind: str | None = None) -> dict[str, dict]:
    """The stack's resources and, in the stack's terms, those of the observability template."""
    found = template()["Resources"] | through(nested()["Resources"])
    return {name: r for name, r in found.items() if kind is None or r["Type"] == kind}


def ref(value: object) -> str | None:
    """The logical id a {"Ref": X} or {"GetAtt": "X.Attr"} names."""
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    if isinstance(value, dict) and "GetAtt" in value:
        target = value["GetAtt"]
        return (target.split(".") if isinstance(target, str) else target)[0]
    return None


@dataclass
class Body:
    """The dashboard body, parsed; placeholders stand for what ${...} substitutes."""

    widgets: list[dict]
    numbers: dict[float, str] = field(default_factory=dict)  # dummy number -> unquoted ${Name}


def placeholder(name: str) -> str:
    """What a quoted ${Name} becomes: recognisable, so a test can tell which resource it was."""
    return f"<{name}>"


def substitute(text: str) -> tuple[str, dict[float, str]]:
    """Replace every ${...} of a Fn::Sub string: a marker string inside JSON strings, a unique number
    outside them (where CloudFormation would leave a bare number in the JSON)."""
    out: list[str] = []
    numbers: dict[float, str] = {}
    in_string = escaped = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "$" and text.startswith("${", i):
            end = text.index("}", i)
            name = text[i + 2 : end]
            if name.startswith("!"):  # ${!Literal} is a literal ${Literal}
                out.append("${" + name[1:] + "}")
            elif in_string:
                out.append(placeholder(name))
            else:
                number = 900_000 + len(numbers)
                numbers[float(number)] = name
                out.append(str(number))
            i = end + 1
            continue
        if in_string and escaped:
            escaped = False
        elif in_string and char == "\\":
            escaped = True
        elif char == '"':
            in_string = not in_string
        out.append(char)
        i += 1
    return "".join(out), numbers


def in_stack_terms(sub: str) -> str:
    """A Fn::Sub string of the observability template with each ${Parameter} replaced by what the
    stack passes: ${Name} for a Ref or GetAtt (so ${IngestFunction} names the stack's function), the
    text itself for a literal."""

    def one(match: re.Match) -> str:
        value = passed().get(match[1], {"Ref": match[1]})
        if isinstance(value, str):
            return value
        assert isinstance(value, dict), value
        ((kind, target),) = value.items()
        assert kind in {"Ref", "GetAtt"}, value
        return "${" + (target if isinstance(target, str) else ".".join(target)) + "}"

    return re.sub(r"\$\{([^}!][^}]*)\}", one, sub)


@pytest.fixture(scope="module")
def body() -> Body:
    dashboard = {n: r for n, r in nested()["Resources"].items() if r["Type"] == "AWS::CloudWatch::Dashboard"}
    assert list(dashboard) == ["Dashboard"]
    raw = dashboard["Dashboard"]["Properties"]["DashboardBody"]["Sub"]
    own = set(nested()["Resources"]) | set(nested()["Parameters"]) | PSEUDO_PARAMETERS
    names = set(re.findall(r"\$\{([^}!][^}]*)\}", raw))
    assert {n.split(".")[0] for n in names} <= own, "the dashboard names something its template lacks"
    sub = in_stack_terms(raw)
    names = set(re.findall(r"\$\{([^}!][^}]*)\}", sub))
    known = set(resources()) | set(template()["Parameters"]) | PSEUDO_PARAMETERS
    assert {n.split(".")[0] for n in names} <= known, "the dashboard names something the stack lacks"
    text, numbers = substitute(sub)
    return Body(json.loads(text)["widgets"], numbers)


@dataclass(frozen=True)
class Metric:
    namespace: str
    name: str
    dimensions: frozenset[str]
    values: tuple[tuple[str, str], ...] = ()  # (dimension, value) where known
    where: str = ""


SEARCH = re.compile(r"\{(?P<schema>[^}]*)\}(?P<terms>[^']*)")
METRIC_NAME = re.compile(r'MetricName\s*=\s*\\?"(?P<name>[^"\\]+)\\?"')


def search_metrics(expression: str, where: str) -> list[Metric]:
    """Metrics of a SEARCH('{Namespace,dim,...} MetricName="X"', ...) expression."""
    found = []
    for call in re.finditer(r"SEARCH\(\s*'(?P<query>[^']*)'", expression):
        query = SEARCH.search(call["query"])
        assert query, f"{where}: a SEARCH without a schema: {expression}"
        namespace, *dimensions = (part.strip().strip('"') for part in query["schema"].split(","))
        names = METRIC_NAME.findall(query["terms"])
        assert names, f"{where}: a SEARCH without MetricName=: {expression}"
        found += [Metric(namespace, name, frozenset(dimensions), where=where) for name in names]
    return found


def expand(row: list, previous: list | None) -> list:
    """A dashboard metric row without its options, "." and "..." shorthand resolved."""
    if row and row[0] == "...":
        assert previous, "'...' without a previous metric"
        rest = row[1:]
        return previous[: len(previous) - len(rest)] + rest
    return [previous[i] if value == "." and previous else value for i, value in enumerate(row)]


def widget_metrics(widget: dict) -> list[Metric]:
    properties = widget.get("properties", {})
    where = f"dashboard widget {properties.get('title')!r}"
    found: list[Metric] = []
    previous: list | None = None
    for row in properties.get("metrics", []):
        options = next((item for item in row if isinstance(item, dict)), {})
        if "expression" in options:
            found += search_metrics(options["expression"], where)
            continue
        values = expand([item for item in row if not isinstance(item, dict)], previous)
        previous = values
        namespace, name, *pairs = values
        assert len(pairs) % 2 == 0, f"{where}: odd dimension list {values}"
        dims = tuple(zip(pairs[::2], pairs[1::2], strict=True))
        found.append(Metric(namespace, name, frozenset(d for d, _ in dims), dims, where))
    return found


def freeze(value: object) -> str:
    """A dimension value as a string: intrinsic functions ({"Ref": X}) as their JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def alarm_metrics(logical_id: str, alarm: dict) -> list[Metric]:
    props = alarm["Properties"]
    where = f"alarm {logical_id}"

    def metric(spec: dict) -> Metric:
        dims = tuple((d["Name"], freeze(d["Value"])) for d in spec.get("Dimensions", []))
        return Metric(spec["Namespace"], spec["MetricName"], frozenset(d for d, _ in dims), dims, where)

    found = [metric(props)] if "MetricName" in props else []
    for query in props.get("Metrics", []):
        if "MetricStat" in query:
            found.append(metric(query["MetricStat"]["Metric"]))
        elif "Expression" in query:
            found += search_metrics(query["Expression"], where)
    assert found, f"{where} watches no metric"
    return found


def dashboard_metrics(body: Body) -> list[Metric]:
    return [m for w in body.widgets if w["type"] == "metric" for m in widget_metrics(w)]


def all_alarm_metrics() -> list[Metric]:
    return [m for lid, a in resources("AWS::CloudWatch::Alarm").items() for m in alarm_metrics(lid, a)]


# ------------------------------------------------------------------------------------- metric names
def test_the_functions_emit_into_the_registry_namespace_as_the_registry_service():
    variables = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == NAMESPACE
    assert variables["POWERTOOLS_SERVICE_NAME"] == SERVICE
    # The dashboard and the alarms read the same namespace and service.
    assert passed()["MetricsNamespace"] == NAMESPACE
    assert passed()["ServiceName"] == SERVICE
    # No function overrides them.
    for name, function in resources("AWS::Serverless::Function").items():
        own = function["Properties"].get("Environment", {}).get("Variables", {})
        assert not {"POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_SERVICE_NAME"} & set(own), name


def test_every_dashboard_and_alarm_metric_of_the_namespace_is_emitted_with_its_dimensions(body):
    ours = [m for m in dashboard_metrics(body) + all_alarm_metrics() if m.namespace == NAMESPACE]
    assert len(ours) > len(telemetry.METRICS)
    for metric in ours:
        assert metric.name in telemetry.METRICS, f"{metric.where}: {metric.name} is not in METRICS"
        assert metric.dimensions == expected_dimensions(metric.name), (
            f"{metric.where}: {metric.name} with dimensions {sorted(metric.dimensions)}, "
            f"the code emits {sorted(expected_dimensions(metric.name))}"
        )
        # A literal service dimension names the service the functions run as.
        for dimension, value in metric.values:
            if dimension == "service":
                assert value == SERVICE, f"{metric.where}: {metric.name} service={value}"
    # Nothing is spelled in another namespace by mistake.
    for metric in dashboard_metrics(body) + all_alarm_metrics():
        assert metric.namespace == NAMESPACE or metric.namespace.startswith("AWS/"), metric
        assert metric.namespace == NAMESPACE or metric.name not in telemetry.METRICS, metric


def test_every_metric_in_the_registry_is_on_the_dashboard(body):
    shown = {m.name for m in dashboard_metrics(body) if m.namespace == NAMESPACE}
    assert sorted(telemetry.METRICS - shown) == []


def test_the_registry_is_consistent():
    constants = {
        value
        for name, value in vars(telemetry).items()
        if name.isupper() and isinstance(value, str) and name not in {"NAMESPACE", "REASON_DIMENSION"}
    }
    assert constants == telemetry.METRICS
    assert set(telemetry.EXTRA_DIMENSIONS) <= telemetry.METRICS
    for mapping in (telemetry.ROW_METRICS, telemetry.BATCH_END_METRICS, telemetry._CALL_METRICS):
        assert set(mapping.values()) <= telemetry.METRICS
    # CloudWatch metric names: no spaces, at most 255 characters.
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9]{1,254}", name) for name in telemetry.METRICS)


# ------------------------------------------------------------------------------------- the source
SOURCES = sorted(
    [*(ROOT / "functions").rglob("*.py"), *(ROOT / "layers" / "common" / "profile_sync").rglob("*.py")]
)
TELEMETRY = ROOT / "layers" / "common" / "profile_sync" / "telemetry.py"


@dataclass
class Emit:
    path: Path
    line: int
    call: str
    argument: ast.expr | None
    loops: dict[str, list[ast.expr]] = field(default_factory=dict)

    def names(self) -> list[ast.expr | None]:
        """What the argument may be: both sides of `A if c else B`, each value a literal loop gives
        its variable (`for name, field in ((m.X, "x"), ...)`), else the argument itself."""
        pending, found = [self.argument], []
        while pending:
            argument = pending.pop()
            if isinstance(argument, ast.IfExp):
                pending += [argument.body, argument.orelse]
            elif isinstance(argument, ast.Name) and argument.id in self.loops:
                pending += self.loops[argument.id]
            else:
                found.append(argument)
        return found


def telemetry_aliases(tree: ast.Module) -> tuple[set[str], dict[str, str]]:
    """Names bound to the telemetry module, and names imported from it (local -> attribute)."""
    modules, members = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "profile_sync":
            modules |= {a.asname or a.name for a in node.names if a.name == "telemetry"}
        elif isinstance(node, ast.ImportFrom) and node.module == "profile_sync.telemetry":
            members |= {a.asname or a.name: a.name for a in node.names}
        elif isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name == "profile_sync.telemetry" and a.asname}
    return modules, members


def literal_loops(tree: ast.Module) -> dict[str, list[ast.expr]]:
    """Loop variables over literal tuples: `for a, b in ((x, y), ...)` -> {a: [x, ...], b: [y, ...]}."""
    loops: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple | ast.List)):
            continue
        if isinstance(node.target, ast.Name):
            loops.setdefault(node.target.id, []).extend(node.iter.elts)
        elif isinstance(node.target, ast.Tuple):
            for i, target in enumerate(node.target.elts):
                if isinstance(target, ast.Name):
                    loops.setdefault(target.id, []).extend(
                        e.elts[i] for e in node.iter.elts if isinstance(e, ast.Tuple)
                    )
    return loops


def emits(path: Path) -> list[Emit]:
    """Every call that names a metric: add_metric(name=), single_metric(name=), telemetry.count(m, X)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules, members = telemetry_aliases(tree)
    loops = literal_loops(tree)
    own = path == TELEMETRY
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        keyword = next((k.value for k in node.keywords if k.arg == "name"), None)
        if callee in {"add_metric", "single_metric"}:
            found.append(Emit(path, node.lineno, callee, keyword or (node.args or [None])[0], loops))
        elif callee == "count" and (
            (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id in modules
            )
            or (isinstance(func, ast.Name) and (own or members.get(func.id) == "count"))
        ):
            found.append(Emit(path, node.lineno, "count", keyword or (node.args[1:2] or [None])[0], loops))
    return found


def metric_constant(path: Path, argument: ast.expr | None) -> str | None:
    """The telemetry constant an argument names, if it names one."""
    modules, members = telemetry_aliases(ast.parse(path.read_text()))
    if (
        isinstance(argument, ast.Attribute)
        and isinstance(argument.value, ast.Name)
        and argument.value.id in modules
    ):
        return argument.attr
    if isinstance(argument, ast.Name) and argument.id in members:
        return members[argument.id]
    if isinstance(argument, ast.Name) and path == TELEMETRY and argument.id.isupper():
        return argument.id
    return None


def passed_through(argument: ast.expr | None) -> bool:
    """Inside telemetry.py: a helper's parameter, or a lookup in one of the registry's mappings."""
    if isinstance(argument, ast.Name):
        return argument.id.islower()
    if isinstance(argument, ast.Subscript) and isinstance(argument.value, ast.Name):
        mapping = getattr(telemetry, argument.value.id, None)
        return isinstance(mapping, dict) and set(mapping.values()) <= telemetry.METRICS
    return False


def test_every_metric_the_source_emits_is_a_registry_constant():
    found = [emit for path in SOURCES for emit in emits(path)]
    problems = []
    for emit in found:
        where = f"{emit.path.relative_to(ROOT)}:{emit.line} {emit.call}"
        for argument in emit.names():
            if isinstance(argument, ast.Constant | ast.JoinedStr):
                problems.append(f"{where}: a literal metric name, not a telemetry constant")
                continue
            constant = metric_constant(emit.path, argument)
            if constant is None:
                if not (emit.path == TELEMETRY and passed_through(argument)):
                    problems.append(f"{where}: a metric name that is no telemetry constant")
            elif getattr(telemetry, constant, None) not in telemetry.METRICS:
                problems.append(f"{where}: {constant} is not in METRICS")
    assert problems == []
    # The scan sees the handlers' metrics (it cannot pass by finding nothing).
    assert len({emit.path for emit in found}) >= 5
    # Every handler records metrics through the registry (directly or with its helpers).
    for app in (ROOT / "functions").glob("*/app.py"):
        tree = ast.parse(app.read_text())
        modules, _ = telemetry_aliases(tree)
        assert any(
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in modules
            for node in ast.walk(tree)
        ), f"{app.relative_to(ROOT)} records no metric"
    assert len(found) >= 20


def test_metrics_are_only_flushed_into_the_one_namespace():
    namespaces = dimensions = 0
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "namespace":
                    assert path == TELEMETRY and isinstance(keyword.value, ast.Name), path
                    assert keyword.value.id == "NAMESPACE", path
                    namespaces += 1
                if keyword.arg == "dimensions" or (
                    isinstance(node.func, ast.Attribute) and node.func.attr == "add_dimension"
                ):
                    # Dimensions are added in telemetry.py only (the registry's EXTRA_DIMENSIONS).
                    assert path == TELEMETRY, f"{path.relative_to(ROOT)}:{node.lineno}"
                    dimensions += 1
    # It cannot pass by reading nothing: every handler and the registry were scanned, and the
    # registry's own namespace= (its single metrics) and its reason dimension were seen.
    handlers = set((ROOT / "functions").glob("*/app.py"))
    assert len(handlers) >= 9 and handlers <= set(SOURCES) and TELEMETRY in SOURCES
    assert namespaces >= 2 and dimensions >= 1, (namespaces, dimensions)


# ------------------------------------------------------------------------------------- dashboard
def metric_widgets(body: Body) -> dict[str, list[Metric]]:
    return {w["properties"]["title"]: widget_metrics(w) for w in body.widgets if w["type"] == "metric"}


def widget_with(body: Body, *names: str, namespace: str = NAMESPACE) -> str:
    """The title of the one metric widget that shows all these metrics."""
    titles = [
        title
        for title, metrics in metric_widgets(body).items()
        if set(names) <= {m.name for m in metrics if m.namespace == namespace}
    ]
    assert titles, f"no widget shows {names}"
    return titles[0]


def test_the_dashboard_has_the_widgets_the_issue_lists(body):
    m = telemetry
    # The row account, throughput, batch states, Target answers and latency, jobs.
    widget_with(body, m.ROWS_RECEIVED, m.ROWS_REJECTED, m.ROWS_SKIPPED, *m.ROW_METRICS.values())
    widget_with(body, m.FILES_RECEIVED, m.FILES_REJECTED, m.BATCHES_CREATED)
    widget_with(body, m.BATCHES_SUBMITTED, *set(m.BATCH_END_METRICS.values()))
    widget_with(body, m.TARGET_CALLS, m.TARGET_THROTTLED, m.TARGET_SERVER_ERRORS, m.TARGET_RETRIES)
    widget_with(body, m.TARGET_LATENCY)
    widget_with(body, m.JOBS_COMPLETED, m.JOBS_WITH_ERRORS, m.JOBS_FAILED)
    widget_with(body, m.JOB_DURATION)
    # Quota used against the limit: a horizontal annotation at the DailyRowQuota parameter.
    quota = next(
        w
        for w in body.widgets
        if w["type"] == "metric" and w["properties"]["title"] == widget_with(body, m.QUOTA_ROWS_RESERVED)
    )
    limits = [body.numbers.get(a.get("value")) for a in quota["properties"]["annotations"]["horizontal"]]
    assert "DailyRowQuota" in limits

    # Workflow executions started/succeeded/failed, on the state machine.
    title = widget_with(
        body, "ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", namespace="AWS/States"
    )
    for metric in metric_widgets(body)[title]:
        assert metric.values == (("StateMachineArn", placeholder("ProfileSyncStateMachine")),)

    # Lambda errors, throttles and duration of every function in the template.
    shown = {(m.name, dict(m.values).get("FunctionName")) for m in dashboard_metrics(body)}
    for function in resources("AWS::Serverless::Function"):
        for name in ("Errors", "Throttles", "Duration"):
            assert (name, placeholder(function)) in shown, f"no Lambda {name} of {function}"
    # DynamoDB throttles of every table.
    for table in resources("AWS::DynamoDB::Table"):
        for name in ("ReadThrottleEvents", "WriteThrottleEvents"):
            assert (name, placeholder(table)) in {
                (m.name, dict(m.values).get("TableName"))
                for m in dashboard_metrics(body)
                if m.namespace == "AWS/DynamoDB"
            }, f"no {name} of {table}"

    # The alarm-status widget lists every alarm of the template.
    (status,) = [w for w in body.widgets if w["type"] == "alarm"]
    listed = status["properties"]["alarms"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {placeholder(f"{a}.Arn") for a in resources("AWS::CloudWatch::Alarm")}

    # A Logs Insights widget over the functions that log rejected files and batch ends.
    (logs,) = [w for w in body.widgets if w["type"] == "log"]
    query = logs["properties"]["query"]
    sources = re.findall(r"SOURCE '<([^>]+)>'", query)
    assert sources
    log_groups = {
        ref(f["Properties"]["LoggingConfig"]["LogGroup"]): name
        for name, f in resources("AWS::Serverless::Function").items()
    }
    assert {log_groups.get(s) for s in sources} == {
        "IngestFunction",
        "SubmitBatchFunction",
        "PollBatchFunction",
        "FailBatchFunction",
    }
    for term in ("correlation_id", "status = 'REJECTED'", "end", "reason", "sort @timestamp desc"):
        assert term in query


def test_the_dashboard_url_is_an_output():
    url = template()["Outputs"]["DashboardURL"]["Value"]["Sub"]
    assert url.startswith("https://${AWS::Region}.console.aws.amazon.com/cloudwatch/")
    assert url.endswith(f"#dashboards:name=${{{OBSERVABILITY}.Outputs.DashboardName}}")
    # The name the URL uses is the dashboard's name: the stack's.
    assert nested()["Outputs"]["DashboardName"]["Value"] == {"Ref": "Dashboard"}
    assert resources()["Dashboard"]["Properties"]["DashboardName"] == {"Ref": "AWS::StackName"}


def test_the_observability_template_is_nested_and_given_each_of_its_parameters():
    app = template()["Resources"][OBSERVABILITY]
    assert app["Type"] == "AWS::Serverless::Application"
    location = app["Properties"]["Location"]
    assert (ROOT / location).is_file() and location.endswith(".yaml")
    # Every Parameter passed, none without a default forgotten (the dashboard and alarms need them).
    assert set(passed()) == set(nested()["Parameters"])
    assert all("Default" not in p for p in nested()["Parameters"].values())
    # No dashboard or alarm is left in template.yaml itself.
    kinds = {r["Type"] for r in template()["Resources"].values()}
    assert not kinds & {"AWS::CloudWatch::Dashboard", "AWS::CloudWatch::Alarm"}


# ------------------------------------------------------------------------------------- alarms
def test_every_alarm_notifies_the_alert_topic():
    alarms = resources("AWS::CloudWatch::Alarm")
    assert alarms
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlertTopic"}], name
        assert props.get("TreatMissingData") == "notBreaching", name


def test_the_alarms_cover_what_the_issue_lists():
    watched = {
        lid: {(m.namespace, m.name, m.values) for m in alarm_metrics(lid, a)}
        for lid, a in resources("AWS::CloudWatch::Alarm").items()
    }
    everything = set().union(*watched.values())
    machine = (("StateMachineArn", freeze({"Ref": "ProfileSyncStateMachine"})),)
    assert ("AWS/States", "ExecutionsFailed", machine) in everything
    assert ("AWS/States", "ExecutionsTimedOut", machine) in everything
    for function in resources("AWS::Serverless::Function"):
        for name in ("Errors", "Throttles"):
            assert ("AWS/Lambda", name, (("FunctionName", freeze({"Ref": function})),)) in everything, (
                function
            )
    # The ingest's failed asynchronous deliveries land in its on-failure queue, which is watched.
    destination = resources()["IngestFunction"]["Properties"]["EventInvokeConfig"]["DestinationConfig"]
    queue = ref(destination["OnFailure"]["Destination"])
    assert any(
        ns == "AWS/SQS" and dict(values).get("QueueName") == freeze({"GetAtt": f"{queue}.QueueName"})
        for ns, _, values in everything
    )
    service = (("service", SERVICE),)
    assert (NAMESPACE, telemetry.BATCHES_STUCK, service) in everything
    assert (NAMESPACE, telemetry.BATCHES_TIMED_OUT, service) in everything
    # Target's 503/5xx rate against the calls, above the TargetErrorRateThreshold parameter.
    (rate,) = [
        lid
        for lid, metrics in watched.items()
        if {(NAMESPACE, n, service) for n in ("TargetCalls", "TargetThrottled", "TargetServerErrors")}
        <= metrics
    ]
    assert resources()[rate]["Properties"]["Threshold"] == {"Ref": "TargetErrorRateThreshold"}


def test_failed_timed_out_and_aborted_executions_reach_the_alert_function():
    function = resources()["ExecutionAlertFunction"]["Properties"]
    assert function["CodeUri"] == "functions/execution_alert/"
    rules = [e["Properties"] for e in function["Events"].values() if e["Type"] == "EventBridgeRule"]
    assert len(rules) == 1
    pattern = rules[0]["Pattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": "ProfileSyncStateMachine"}]
    statements = [s for p in function["Policies"] if "Statement" in p for s in p["Statement"]]
    assert {"Effect": "Allow", "Action": "sns:Publish", "Resource": {"Ref": "AlertTopic"}} in statements


def test_traces_never_record_a_handlers_response():
    """The steps' results name rows and reasons: Tracer must not put them into a trace."""
    decorated = 0
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"capture_lambda_handler", "capture_method"}
            ):
                decorated += 1
                options = {k.arg: k.value for k in node.keywords}
                assert isinstance(options.get("capture_response"), ast.Constant), path
                assert options["capture_response"].value is False, f"{path.relative_to(ROOT)}:{node.lineno}"
            assert not (
                isinstance(node, ast.Attribute) and node.attr in {"put_annotation", "put_metadata"}
            ), f"{path.relative_to(ROOT)}: adds its own trace data; check it holds no profile value"
    # One decoration, in the handler factory every function goes through.
    assert decorated == 1
    for app in (ROOT / "functions").glob("*/app.py"):
        assert "@function.handler" in app.read_text(), (
            f"{app.relative_to(ROOT)} is not wrapped by LambdaFunction"
        )
