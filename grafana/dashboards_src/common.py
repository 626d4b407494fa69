"""Shared pieces: uids, datasources, variables, panel defaults, links.

Every panel starts from one of the ``default_*`` builders so the dashboards look and
behave alike; modules then set title, unit, targets and size. Nothing here spells PromQL
(that lives in ``queries``).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from grafana_foundation_sdk.builders import (
    bargauge,
    dashboard,
    heatmap,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models import prometheus as prom
from grafana_foundation_sdk.models import units
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableHide,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from wan_exporter.contract import exporter as X
from wan_exporter.contract import gpu as G
from wan_exporter.contract import models as M

from . import queries as q

# -- identities: alerts' dashboard_url and the provisioning files refer to these ---------------

UID_OVERVIEW = "wan-overview"
UID_MODEL = "wan-model-detail"
UID_COMPARISON = "wan-comparison"
UID_FLEET = "wan-fleet"
UID_TRAFFIC = "wan-traffic"
TITLES = {
    UID_OVERVIEW: "Wan / Overview",
    UID_MODEL: "Wan / Model detail",
    UID_COMPARISON: "Wan / Comparison",
    UID_FLEET: "Wan / Fleet and history",
    UID_TRAFFIC: "Wan / Traffic",
}
TAG = "wan-exporter"

PROMETHEUS_UID = "prometheus"
PROMETHEUS_NAME = "Prometheus"
ALERTMANAGER_UID = "alertmanager"
ALERTMANAGER_NAME = "Alertmanager"

# Panels query the datasource the user picked in the ``datasource`` variable.
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")

REFRESH = "30s"
REFRESH_INTERVALS = ["10s", "30s", "1m", "5m", "15m", "30m", "1h"]

# wan_model_health_status encoded by queries.health_state_code(): value -> (text, colour).
HEALTH_STATE_COLOURS = (("healthy", "green"), ("degraded", "orange"), ("critical", "red"), ("missing", "purple"))
HEALTH_STATES = {code: (status, colour) for status, code in q.HEALTH_CODES
                 for s, colour in HEALTH_STATE_COLOURS if s == status}

# Grafana unit for pixels per second with SI prefixes (kpx/s, Mpx/s); no such unit in models.units.
PIXELS_PER_SECOND = "si:px/s"


# -- thresholds: the alerts' own figures (alerting/thresholds.yml), so colours turn where alerts fire --

_T = q.alerting_settings()["thresholds"]
SUCCESS_WARNING = float(_T["benchmark_success_ratio_warning"])
SUCCESS_CRITICAL = float(_T["benchmark_success_ratio_critical"])
STALE_SECONDS = float(_T["benchmark_interval_seconds"]) * float(_T["benchmark_stale_intervals"])
SLOWDOWN_RATIO = float(_T["generation_slowdown_ratio"])
MEMORY_HEADROOM_RATIO = float(_T["memory_headroom_ratio"])
GPU_HOT_CELSIUS = float(_T["gpu_temperature_celsius"])


# -- variables -----------------------------------------------------------------------------------

def datasource_variable() -> dashboard.DatasourceVariable:
    return (
        dashboard.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(VariableOption(selected=True, text=PROMETHEUS_NAME, value=PROMETHEUS_UID))
        .multi(False)
    )


def query_variable(name: str, label: str, query: str, *, multi: bool = True, include_all: bool = True,
                   hide: bool = False) -> dashboard.QueryVariable:
    v = (
        dashboard.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DS)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(include_all)
    )
    if include_all:
        v = v.all_value(".*").current(VariableOption(selected=True, text="All", value="$__all"))
    if hide:
        v = v.hide(VariableHide.HIDE_VARIABLE)
    return v


def standard_variables(*, single_instance: bool = False, single_model: bool = False) -> list:
    """datasource, instance, gpu and model: every dashboard has them, in this order."""
    return [
        datasource_variable(),
        query_variable("instance", "Instance", q.label_values(X.BUILD_INFO, "instance"),
                       multi=not single_instance, include_all=not single_instance),
        query_variable("gpu", "GPU", q.label_values(G.INFO, "gpu", "instance")),
        query_variable("model", "Model", q.label_values(M.INFO, "model", "instance"),
                       multi=not single_model, include_all=not single_model),
    ]


# -- links -----------------------------------------------------------------------------------------

def dashboard_url(uid: str) -> str:
    return f"/d/{uid}"


def dashboard_links(current_uid: str) -> list[dashboard.DashboardLink]:
    """A dropdown of every Wan dashboard, then one direct link to each of the others."""
    links = [
        dashboard.DashboardLink("Wan dashboards")
        .type(DashboardLinkType.DASHBOARDS)
        .tags([TAG])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    ]
    for uid, title in TITLES.items():
        if uid == current_uid:
            continue
        links.append(
            dashboard.DashboardLink(title)
            .type(DashboardLinkType.LINK)
            .url(dashboard_url(uid))
            .icon("dashboard")
            .tooltip(f"Open {title} with the current variables and time range")
            .include_vars(True)
            .keep_time(True)
        )
    return links


def alerting_links() -> list[dashboard.DashboardLink]:
    """Grafana's own Alerting pages for the provisioned Alertmanager: groups (firing, silenced) and silences."""
    out = []
    for title, page in (("Alert groups (Alertmanager)", "groups"), ("Silences (Alertmanager)", "silences")):
        out.append(
            dashboard.DashboardLink(title)
            .type(DashboardLinkType.LINK)
            .url(f"/alerting/{page}?alertmanager={ALERTMANAGER_NAME}")
            .icon("bolt")
            .target_blank(True)
        )
    return out


def model_detail_url(model: str = "${model:queryparam}", instance: str = "${instance:queryparam}") -> str:
    """Link to the model detail dashboard; ``model``/``instance`` are already ``var-...=`` query parts."""
    return (f"{dashboard_url(UID_MODEL)}?{model}&{instance}"
            "&${datasource:queryparam}&${__url_time_range}")


def panel_link(title: str, url: str) -> dashboard.DashboardLink:
    return dashboard.DashboardLink(title).type(DashboardLinkType.LINK).url(url)


def field_link(title: str, url: str) -> DynamicConfigValue:
    """An override property that turns a table column into a link (data link)."""
    return DynamicConfigValue(id_val="links", value=[{"title": title, "url": url}])


def model_column_link() -> DynamicConfigValue:
    """Table column ``model`` (with ``instance`` in the same frame) links to that model's detail."""
    return field_link("Model detail: ${__value.raw}",
                      model_detail_url("var-model=${__value.raw}", "var-instance=${__data.fields.instance}"))


# -- queries -------------------------------------------------------------------------------------

def prom_query(expr: str, legend: str = "", ref_id: str = "A", *, instant: bool = False,
               fmt: prom.PromQueryFormat | None = None, interval: str | None = None) -> prometheus.Dataquery:
    t = prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref_id).datasource(DS)
    t = t.instant() if instant else t.range()
    if fmt is not None:
        t = t.format(fmt)
    if interval is not None:
        t = t.interval(interval)
    return t


def table_query(expr: str, ref_id: str = "A") -> prometheus.Dataquery:
    return prom_query(expr, ref_id=ref_id, instant=True, fmt=prom.PromQueryFormat.TABLE)


def heatmap_query(expr: str, ref_id: str = "A") -> prometheus.Dataquery:
    return prom_query(expr, "{{le}}", ref_id, fmt=prom.PromQueryFormat.HEATMAP)


# -- value mappings and thresholds -----------------------------------------------------------------

def value_map(options: Mapping[object, tuple[str, str]]) -> list[ValueMap]:
    return [ValueMap(options={str(k): ValueMappingResult(text=t, color=c, index=i)
                              for i, (k, (t, c)) in enumerate(options.items())})]


def health_mappings() -> list[ValueMap]:
    return value_map(HEALTH_STATES)


def yes_no_mappings(yes: str = "yes", no: str = "no", yes_color: str = "green",
                    no_color: str = "red") -> list[ValueMap]:
    return value_map({1: (yes, yes_color), 0: (no, no_color)})


def _number(v: float | None) -> float | int | None:
    """1.0 -> 1 so the JSON reads as written."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    """``thresholds((None, "green"), (0.9, "red"))``: the first step is the base."""
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=_number(v), color=c) for v, c in steps])
    )


def prop(id_val: str, value: object) -> DynamicConfigValue:
    """An override property; builders (thresholds) are built here."""
    build = getattr(value, "build", None)
    return DynamicConfigValue(id_val=id_val, value=build() if callable(build) else value)


# -- transformations -------------------------------------------------------------------------------

def organize(exclude: Iterable[str] = ("Time", "__name__", "job"), rename: Mapping[str, str] | None = None,
             order: Sequence[str] = ()) -> DataTransformerConfig:
    return DataTransformerConfig(id_val="organize", options={
        "excludeByName": {k: True for k in exclude},
        "renameByName": dict(rename or {}),
        "indexByName": {k: i for i, k in enumerate(order)},
    })


def merge() -> DataTransformerConfig:
    """Join the table frames of several instant queries on their common label columns."""
    return DataTransformerConfig(id_val="merge", options={})


def grouping_to_matrix(row: str, column: str, value: str = "Value") -> DataTransformerConfig:
    return DataTransformerConfig(id_val="groupingToMatrix", options={
        "rowField": row, "columnField": column, "valueField": value, "emptyValue": "null",
    })


# -- panel defaults --------------------------------------------------------------------------------

def default_timeseries() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .datasource(DS)
        .height(8)
        .span(12)
        .line_width(2)
        .fill_opacity(10)
        .line_interpolation(common.LineInterpolation.LINEAR)
        .show_points(common.VisibilityMode.AUTO)
        .draw_style(common.GraphDrawStyle.LINE)
        .gradient_mode(common.GraphGradientMode.NONE)
        .span_nulls(False)
        .axis_border_show(False)
        .legend(
            common_builder.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common_builder.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .thresholds_style(common_builder.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.OFF))
    )


def default_bars() -> timeseries.Panel:
    """Counts of events per interval (failures, skips): bars, stacked by series."""
    return (
        default_timeseries()
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builder.StackingConfig().mode(common.StackingMode.NORMAL))
    )


def series(title: str, description: str, unit: str, span: int, *targets: object) -> timeseries.Panel:
    """A default time series from zero: title, description, unit, width and its queries, in order."""
    p = default_timeseries().title(title).description(description).unit(unit).min(0).span(span)
    for t in targets:
        p = p.with_target(t)
    return p


def default_stat() -> stat.Panel:
    return (
        stat.Panel()
        .datasource(DS)
        .height(4)
        .span(6)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.AUTO)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
    )


def default_table() -> table.Panel:
    return (
        table.Panel()
        .datasource(DS)
        .height(8)
        .span(12)
        .show_header(True)
        .filterable(True)
        .cell_height(common.TableCellHeight.SM)
        .footer(common_builder.TableFooterOptions().show(False).reducer(["sum"]))
    )


def health_state_stat(title: str, description: str, query: str, *, span: int, height: int) -> stat.Panel:
    """Models per health state, one coloured value per state (overview and fleet)."""
    panel = (
        default_stat()
        .title(title)
        .description(description)
        .unit(units.NoUnit)
        .span(span)
        .height(height)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .with_target(prom_query(query, "{{status}}", instant=True))
    )
    for state, colour in HEALTH_STATE_COLOURS:
        panel = panel.override_by_name(state, [prop("color", {"mode": "fixed", "fixedColor": colour})])
    return panel


def default_state_timeline() -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .datasource(DS)
        .height(6)
        .span(12)
        .show_value(common.VisibilityMode.AUTO)
        .merge_values(True)
        .row_height(0.8)
        .fill_opacity(80)
        .line_width(0)
        .legend(
            common_builder.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common_builder.VizTooltipOptions().mode(common.TooltipDisplayMode.SINGLE))
    )


def default_bargauge() -> bargauge.Panel:
    return (
        bargauge.Panel()
        .datasource(DS)
        .height(8)
        .span(8)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .value_mode(common.BarGaugeValueMode.COLOR)
        .name_placement(common.BarGaugeNamePlacement.AUTO)
        .sizing(common.BarGaugeSizing.AUTO)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def default_heatmap() -> heatmap.Panel:
    return (
        heatmap.Panel()
        .datasource(DS)
        .height(8)
        .span(12)
        .calculate(False)
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_model.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .steps(64)
            .exponent(0.5)
            .fill("dark-orange")
            .reverse(False)
        )
        .y_axis(heatmap.YAxisConfig().unit(units.Seconds).reverse(False))
        .cell_values(heatmap.CellValues().unit(units.Short))
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO))
        .show_value(common.VisibilityMode.NEVER)
        .show_legend()
        .mode(common.TooltipDisplayMode.SINGLE)
        .show_y_histogram()
        .show_color_scale(True)
    )


def alert_list() -> dashboard.Panel:
    """Grafana's alert list panel, reading alert rules (firing, pending) from the Prometheus datasource.

    The SDK has no builder for this core panel, so it is a plain panel with the plugin's options.
    The panel's ``datasource`` option is a rules-source *name* (Prometheus, Loki or Grafana);
    Alertmanager state (silences) is not a rules source: see ``alerting_links()`` and the
    ``alertmanager_alerts`` panels.
    """
    return (
        dashboard.Panel()
        .type("alertlist")
        .height(8)
        .span(12)
        .unit(units.NoUnit)
        .options({
            "viewMode": "list",
            "groupMode": "default",
            "groupBy": [],
            "maxItems": 50,
            "sortOrder": 3,  # importance: firing first
            "dashboardAlerts": False,
            "alertName": "",
            "alertInstanceLabelFilter": "",
            "datasource": PROMETHEUS_NAME,
            "showInactiveAlerts": False,
            "stateFilter": {"firing": True, "pending": True, "recovering": True, "noData": False,
                            "normal": False, "error": True},
        })
    )
