"""API Gateway WebSockets: Pusher protocol 7 over $connect/$default/$disconnect, state in DynamoDB.

Nothing here imports boto3 at module level: the SDK is loaded on the first AWS call.
"""
