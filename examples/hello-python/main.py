# A python function: event (parsed JSON, text or bytes) in, JSON out.
def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    return {"message": "hello " + name, "invocation_id": context.invocation_id}
