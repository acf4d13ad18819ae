"""What deploys the relay: CloudFormation (*.yaml) and the Lambda bundle (lambda_build.py)."""
