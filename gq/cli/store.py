"""The commands on the store as a whole: stats, check and purge."""

from __future__ import annotations

from gq.cli.common import Parents, open_queue, parse_duration, print_json, print_table

EXIT_DAMAGED = 3     # `gq check` found damage (0 when clean)


def cmd_stats(args) -> int:
    with open_queue(args) as q:
        stats = q.stats()
    if args.json:
        print_json(stats)
        return 0
    states = list(stats["by_state"])
    rows = [[job_type] + [counts.get(s, 0) for s in states] + [sum(counts.values())]
            for job_type, counts in stats["by_type"].items()]
    rows.append(["(all types)"] + [stats["by_state"][s] for s in states] + [stats["total"]])
    print_table(["TYPE"] + [s.upper() for s in states] + ["TOTAL"], rows,
                right=set(range(1, len(states) + 2)))
    if stats["paused"]:
        print("paused: " + ", ".join(stats["paused"]))
    return 0


def cmd_check(args) -> int:
    with open_queue(args) as q:
        report = q.store.check()
    if args.json:
        print_json({"ok": report.ok, "records": report.records,
                    "damaged": [{"id": i, "reason": r} for i, r in report.damaged],
                    "index_problems": report.index_problems})
    else:
        for job_id, reason in report.damaged:
            print(f"damaged: {job_id}: {reason}")
        for problem in report.index_problems:
            print(f"index: {problem}")
        print(f"checked {report.records} records: "
              + ("ok" if report.ok else f"{len(report.damaged)} damaged, "
                 f"{len(report.index_problems)} index problems"))
    return 0 if report.ok else EXIT_DAMAGED


def cmd_purge(args) -> int:
    age = parse_duration(args.older_than)
    with open_queue(args) as q:
        n = q.purge(older_than=age)
    if args.json:
        print_json({"purged": n})
    else:
        print(f"purged {n} finished jobs older than {args.older_than}")
    return 0


def add_stats(sub, parents: Parents) -> None:
    p = sub.add_parser("stats", parents=[parents.data_json], help="counts by state and type",
                       description="Count jobs by type and state, and list the paused "
                       "types.")
    p.set_defaults(func=cmd_stats)


def add_check(sub, parents: Parents) -> None:
    p = sub.add_parser("check", parents=[parents.data_json],
                       help="verify every record's checksum and every index",
                       description="Read every record (checksum verified) and compare the "
                       "indexes with them; print each damaged job id. Exit status "
                       f"{EXIT_DAMAGED} on damage, 0 when clean. Read-only.")
    p.set_defaults(func=cmd_check)


def add_purge(sub, parents: Parents) -> None:
    p = sub.add_parser("purge", parents=[parents.data_json],
                       help="delete finished jobs past an age",
                       description="Delete completed, failed and cancelled jobs that "
                       "finished longer ago than --older-than (dead_letter jobs are kept "
                       "for operators to retry).")
    p.add_argument("--older-than", required=True, metavar="DURATION",
                   help="e.g. 3600, 90m, 12h, 7d")
    p.set_defaults(func=cmd_purge)
