#!/usr/bin/env bash
# Fails on a high or critical advisory in the production dependencies. Where the registry this
# machine reaches has no advisory endpoint (it answers 405), says so loudly instead of failing:
# that is the registry's limit, not a finding.
set -uo pipefail
report=$(npm audit --omit=dev --audit-level=high --json 2>/dev/null)
status=$?
if [ $status -eq 0 ]; then
  echo "npm audit: no high or critical advisory in production dependencies"
  exit 0
fi
if echo "$report" | grep -q '"vulnerabilities"'; then
  echo "$report" | node -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8"));for(const [n,v] of Object.entries(r.vulnerabilities))if(["high","critical"].includes(v.severity))console.error(`npm audit: ${v.severity}: ${n}`)'
  exit 1
fi
echo "*** npm audit could not run: the registry has no advisory endpoint here ($(echo "$report" | grep -o '"statusCode": [0-9]*' | head -1)). Not checked. ***"
exit 0
