# Nomad ACL policy that lets the rbee jobs read their bearer tokens from the Nomad Variable
# `nomad/jobs/rbee` (the jobs' `tokens_path`). A task reads variables of its own job without a
# policy, but both rbee jobs share this one, so attach the policy to each job's workload identity
# (only needed on clusters with ACLs enabled):
#
#   nomad acl policy apply -namespace default -job rbee-queen rbee-queen-tokens jobs/nomad/rbee-tokens.policy.hcl
#   nomad acl policy apply -namespace default -job rbee-hive  rbee-hive-tokens  jobs/nomad/rbee-tokens.policy.hcl
#
# Change the path here if you change `tokens_path` in the jobs.

namespace "default" {
  variables {
    path "nomad/jobs/rbee" {
      capabilities = ["read"]
    }
  }
}
