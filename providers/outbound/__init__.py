"""Every call from the relay to a provider's HTTP API: one client, one retry loop.

    lazy.py      the provider's client, built on its first use, refused after closing
    policy.py    how many attempts, the waits between them, the deadline of a whole call
    verdict.py   what an attempt's outcome says: delivered, surely not, maybe, or final;
                 the classifier each provider supplies
    client.py    the pooled httpx client and the retry loop
    sigv4.py     AWS Signature Version 4, for the providers that call AWS (apigateway, appsync)

Only policy.py, lazy.py and sigv4.py are free of httpx: a provider may import them at start-up,
and the rest with its client, on the first call.
"""
