"""The one library of the tools in tools/ (each of those is an entry point and imports no other tool):

  stack_outputs  the names of the stacks' outputs (stacks/*.py export them), read from a stack by name
  kubeconfig     a stack's `kubeconfig` setting turned into KUBECONFIG (pulumi's environment, this process)
  throwaway      a stack of its own for one run (the drills' clusters, the tests' and benchmarks' programs)
  drills         what the drills, the upgrade and the seal migration share: step clock, value hashes,
                 the stack's KV mount, its CA file, the report writer
  raft_nodes     a stack's Raft nodes (containers or pods) and the token that drives them
  kube_nodes     a prod stack's Vault pods as Raft nodes, through the Kubernetes API
  drill_sources  where the restore drill takes its backups from and stands its throwaway cluster up
  seal_keys      where the tools find a stack's key shares
  versions       tools/versions.env for Python
"""
