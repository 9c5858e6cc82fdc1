"""One step of the ETL example; what it does depends on its arguments."""

import sys

from titan_runtime import task

stage = sys.argv[1]
if stage == "ingest":
    rows = [{"id": i, "amount": i * 10} for i in range(1, 11)]
    print(f"ingest: {len(rows)} rows")
    task.set_result(rows)
elif stage == "transform":
    name = sys.argv[2]
    rows = task.parent_results()["ingest"]
    if name == "clean":
        rows = [r for r in rows if r["amount"] > 0]
    elif name == "enrich":
        rows = [{**r, "tax": r["amount"] // 10} for r in rows]
    else:
        rows = list({r["id"]: r for r in rows}.values())
    print(f"transform {name}: {len(rows)} rows")
    task.set_result({"name": name, "rows": len(rows), "amount": sum(r["amount"] for r in rows)})
elif stage == "aggregate":
    parts = task.parent_results()
    total = sum(p["amount"] for p in parts.values())
    print(f"aggregate: {len(parts)} transforms, amount {total}")
    task.set_result({"transforms": len(parts), "amount": total})
elif stage == "validate":
    agg = task.parent_results()["aggregate"]
    assert agg["transforms"] == 3 and agg["amount"] == 3 * 550, agg
    print("validate: ok")
    task.set_result(agg)
else:
    agg = task.parent_results()["validate"]
    print(f"report: 3 transforms of 10 rows, total amount {agg['amount']}")
    task.set_result("ok")
