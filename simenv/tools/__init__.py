"""Tools: typed Python functions the agent calls, and the patterns that back them.

``base`` holds the ``@tool`` decorator and result formatting; ``sandbox`` the seeded stateful
sandbox.
"""
