"""What every Redis lock of qbot shares: it is taken with SET NX PX and a random token, and released by this.

Delete the lock only if it still holds our token: a lock that expired and was taken by another process must
not be released by us.
"""

RELEASE_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
