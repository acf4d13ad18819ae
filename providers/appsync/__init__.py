"""AWS AppSync Events: publishes through the Event API's HTTP endpoint (SigV4 or an API key), and
the relay's policy answers the API's Lambda authorizer and its namespace's onSubscribe/onPublish.

Nothing here imports boto3 or httpx at module level: signing needs botocore's credentials only on
the first publish, and the authorizer never publishes.
"""
