# The repeat (a second device call, 2x H200): one GPU vs PP=2 with 3 batches in flight, 256
# sequences, 3000 ShareGPT prompts at once (as final_call.py).
import json, os, sys
sys.path.insert(0, "scripts/device")
import scale_checks as sc
res = {"throughput": []}
log = open("/tmp/pp.log", "w")
for layout, extra in [("pp2", ("--pp-micro-batches", "3")), ("1", ())]:
    sc.throughput("build-cuda/fastserve", [f"llama-3-8b:{layout}"], log, res, 256, 256, 3000,
                  server_args=extra)
    json.dump(res, open(os.environ["OUT"] + "/throughput_repeat.json", "w"), indent=1)
