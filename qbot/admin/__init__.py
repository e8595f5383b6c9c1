"""What an AWS or Q Business administrator runs before (and beside) the bot: provisioning, group sync, doctor.

Nothing here is on a chat request's path. These modules talk to IAM and the Q Business control plane with the
administrator's own AWS credentials (the default boto3 credential chain or a named profile), never with a
user's.
"""
