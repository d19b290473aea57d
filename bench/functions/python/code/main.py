# Bench function: trivial; {"write": true} writes a file so the call gets a fresh root.
def handler(event, context):
    if isinstance(event, dict) and event.get("write"):
        with open("/tmp/out", "w") as f:
            f.write("x")
    return {"ok": True}
