"""``ntd stats``: anonymised statistics (registered by ``engine.cli``)."""

from __future__ import annotations

from typing import Any

import click

from engine.cli.common import JSON_OPT, Obj, emit_json
from engine.cli.root import cli
from engine.errors import InputError


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "suppressed"
    if isinstance(value, float) and unit == "%":
        return f"{100 * value:.1f}%"
    return f"{value}{unit}"


def _breakdown(title: str, counts: dict[str, int]) -> None:
    if not counts:
        return
    click.echo(f"{title}:")
    for key, n in counts.items():
        click.echo(f"  {key:<20} {n}")


def _echo_text(s: dict[str, Any]) -> None:
    period = s["period"]
    click.echo(f"period: {period['from'] or 'start'} – {period['to'] or 'now'}   "
               f"(cells below {s['min_count']} folded into 'other')")
    click.echo(f"reports: {s['reports']} ({s['duplicates']} duplicates)")
    _breakdown("by channel", s["by_channel"])
    click.echo(f"cases: {s['cases']}, confirmed: {s['confirmed']} "
               f"(share: {_fmt(s['confirmed_share'], '%')}), dismissed: {s['dismissed']}")
    _breakdown("by category", s["by_category"])
    _breakdown("by hosting country", s["by_country"])
    _breakdown("top networks (by ASN, else prefix)",
               {" ".join(x for x in (k, v.get("org"), v.get("country") and f"({v['country']})")
                         if x): v["cases"] for k, v in s["top_networks"].items()})
    click.echo(f"noticed cases: {s['cases_noticed']}, notices sent: {s['notices_sent']}, "
               f"escalated cases: {s['escalated']} ({s['escalations']} steps)")
    click.echo(f"removed: {s['removed']} (share of noticed cases: "
               f"{_fmt(s['removed_share'], '%')})")
    for label, hours, within, of_removed in (
            ("from report (INHOPE)", s["removal_hours"], s["removed_within"],
             s["removed_within_of_removed"]),
            ("from notice (IWF)", s["removal_hours_from_notice"],
             s["removed_within_from_notice"], s["removed_within_from_notice_of_removed"])):
        click.echo(f"time to removal {label}: p50 {_fmt(hours['p50'], ' h')}, "
                   f"p90 {_fmt(hours['p90'], ' h')}")
        click.echo(f"  removed within 24h / 72h / 7d, of noticed cases: "
                   f"{_fmt(within['24h'], '%')} / {_fmt(within['72h'], '%')} / "
                   f"{_fmt(within['7d'], '%')}; of removed cases only: "
                   f"{_fmt(of_removed['24h'], '%')} / {_fmt(of_removed['72h'], '%')} / "
                   f"{_fmt(of_removed['7d'], '%')}")
    inhope = s.get("inhope")
    if inhope and inhope["all"]["cases"]:
        click.echo("INHOPE (hours from receipt, p50): country  cases  to ICCAM report  "
                   "to notice  to removal  removed within 3 days")
        for country, g in {"all": inhope["all"], **inhope["by_country"]}.items():
            click.echo(f"  {country:<8} {g['cases']:>5}  "
                       f"{_fmt(g['hours_to_iccam_report']['p50'], ' h'):>15}  "
                       f"{_fmt(g['hours_to_notice']['p50'], ' h'):>9}  "
                       f"{_fmt(g['hours_to_removal']['p50'], ' h'):>10}  "
                       f"{_fmt(g['removed_within_3d'], '%')}")


@cli.command()
@click.option("--from", "date_from", metavar="YYYY-MM-DD", default=None,
              help="First day (inclusive; default: the first report).")
@click.option("--to", "date_to", metavar="YYYY-MM-DD", default=None,
              help="Last day (inclusive; default: today).")
@JSON_OPT
@click.option("--csv", "as_csv", is_flag=True, help="Print flat CSV rows (metric,key,value).")
@click.option("--plot", "plot_dir", metavar="DIR", default=None,
              help="Also write PNG charts into DIR.")
@click.pass_obj
def stats(obj: Obj, date_from: str | None, date_to: str | None, as_json: bool, as_csv: bool,
          plot_dir: str | None) -> None:
    """Anonymised statistics: aggregates only, small counts suppressed."""
    # deferred: keeps `ntd` start-up fast (loaded when the command runs)
    from engine import stats as engine_stats

    if as_json and as_csv:
        raise InputError("--json and --csv: choose one output format")
    period = engine_stats.parse_period(date_from, date_to)
    result = engine_stats.compute_for_runtime(obj.runtime(), period)
    paths = engine_stats.plot(result, plot_dir) if plot_dir else []
    if as_json:
        emit_json(result.summary)
    elif as_csv:
        click.echo(engine_stats.to_csv(result.summary), nl=False)
    else:
        _echo_text(result.summary)
    for path in paths:
        click.echo(f"wrote {path}", err=True)
