#!/usr/bin/python3
"""The short version of tests/soak.py, inside `make test`: 5 seconds of load
from 50 clients, a flood past 60 connections, 8 slow clients, 10 reloads
(RSS allowed to move 25%: five seconds cannot tell growth from noise).
`make soak` runs the long one."""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
os.execv(sys.executable, [sys.executable, os.path.join(here, "soak.py"), "--seconds", "5", "--clients", "50",
                          "--reloads", "10", "--slow", "8", "--maxclients", "60",
                          # five seconds is too short to tell growth from noise: the long run holds 5%
                          "--rss-growth", "0.25"])
