"""Each step of the research agent; the planner and the judge are scripted stand-ins for an LLM."""

import sys

from titan_runtime import task

step = sys.argv[1]
round_ = task.iteration()
if step == "plan":
    topics = {1: ["latency", "cost"], 2: ["latency", "cost", "failure modes"]}.get(round_, ["summary"])
    print(f"round {round_}: planning {topics}")
    task.set_result(topics)
elif step == "research":
    topic = task.map_item()
    print(f"round {round_}: researching {topic}")
    task.set_result({"topic": topic, "notes": f"{len(topic)} facts about {topic}"})
elif step == "evaluate":
    findings = next(iter(task.parent_results().values()))
    score = len(findings) / 3
    print(f"round {round_}: {len(findings)} findings, score {score:.2f}")
    if score < 1 and round_ < 3:
        task.add_iteration(["plan", "research", "evaluate"], max_iterations=3)
        print(f"round {round_}: not good enough; planning round {round_ + 1}")
    task.set_result({"round": round_, "findings": findings})
else:
    final = next(iter(task.parent_results().values()))
    topics = [f["topic"] for f in final["findings"]]
    print(f"synthesis after {final['round']} round(s): {', '.join(topics)}")
    task.set_result({"rounds": final["round"], "topics": topics})
