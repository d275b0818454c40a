"""MCP tools/call round trip for run_command through the official Python SDK, beside a
direct subprocess call of the same program. Prints one JSON object (medians in ms)."""
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

STOCKADE, RUNS = sys.argv[1], int(sys.argv[2])


async def roundtrips(workspace):
    params = StdioServerParameters(command=STOCKADE, args=["mcp", "--workspace", workspace])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for _ in range(10):
                await session.call_tool("run_command", {"argv": ["/bin/true"]})
            times = []
            for _ in range(RUNS):
                start = time.perf_counter()
                result = await session.call_tool("run_command", {"argv": ["/bin/true"]})
                times.append((time.perf_counter() - start) * 1000)
                assert not result.is_error
            return times


def direct():
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


with tempfile.TemporaryDirectory() as workspace:
    mcp_times = asyncio.run(roundtrips(workspace))
direct_times = direct()
print(json.dumps({"runs": RUNS, "mcp_call_ms": statistics.median(mcp_times), "subprocess_ms": statistics.median(direct_times)}))
