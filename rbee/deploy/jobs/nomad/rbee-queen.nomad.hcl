# rbee queen: the control plane of an rbee cluster (one instance).
#
#   rbee deploy nomad --check                       # structural checks, no server needed
#   nomad job run jobs/nomad/rbee-queen.nomad.hcl   # or: rbee deploy nomad --job rbee-queen
#
# Before the first run, store the three bearer tokens in the Nomad Variable named by
# `tokens_path` and let this job read it (docs/deployment.md, "Cluster with Nomad"):
#
#   nomad var put nomad/jobs/rbee queen_token=... hive_token=... worker_token=...
#
# Nomad clients need the raw_exec driver enabled and rbee installed at `rbee_bin`.
# The task runs as the user of the Nomad client, which also owns the rendered token files
# (rbee refuses token files that belong to another user or that others can read).

variable "datacenters" {
  description = "Datacenters the queen may be placed in."
  type        = list(string)
  default     = ["dc1"]
}

variable "rbee_bin" {
  description = "Absolute path of the rbee executable on every client node."
  type        = string
  default     = "/opt/rbee/bin/rbee"
}

variable "port" {
  description = "Port of the queen's API (OpenAI-compatible and native), static so clients can find it."
  type        = number
  default     = 8080
}

variable "data_dir" {
  description = "Folder for the queen's state (node registry, audit log); kept across restarts."
  type        = string
  default     = "/var/lib/rbee/queen"
}

variable "tokens_path" {
  description = "Nomad Variable holding queen_token, hive_token and worker_token."
  type        = string
  default     = "nomad/jobs/rbee"
}

job "rbee-queen" {
  datacenters = var.datacenters
  type        = "service"

  # Rolling update, one allocation at a time: a new version must pass its health check for
  # 10 s; if it does not within the deadline the job goes back to the last stable version.
  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = true
  }

  group "queen" {
    count = 1

    # Let service discovery drop the queen before it is told to stop.
    shutdown_delay = "5s"

    network {
      port "http" {
        static = var.port
      }
    }

    # A queen that keeps crashing fails its allocation, so Nomad reschedules it elsewhere.
    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "fail"
    }

    service {
      name     = "rbee-queen"
      port     = "http"
      provider = "nomad"

      check {
        name     = "queen health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"

        # Restart a queen that stops answering (after its start-up grace).
        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    task "queen" {
      driver = "raw_exec"

      config {
        command = var.rbee_bin
        args = [
          "queen",
          "--host", "${NOMAD_IP_http}",
          "--port", "${NOMAD_PORT_http}",
          "--data-dir", var.data_dir,
          "--no-local-hive",
          "--token-file", "${NOMAD_SECRETS_DIR}/queen-token",
          "--hive-token-file", "${NOMAD_SECRETS_DIR}/hive-token",
          "--worker-token-file", "${NOMAD_SECRETS_DIR}/worker-token",
        ]
      }

      # On SIGTERM the queen stops admitting, drains in-flight requests for up to
      # RBEE_DRAIN_BUDGET_S, then exits. kill_timeout must cover the drain budget plus
      # RBEE_SIGTERM_GRACE_S (`rbee deploy nomad --check` enforces it). Nomad clients cap
      # kill_timeout at their `max_kill_timeout` (30 s unless raised in the client config).
      env {
        RBEE_DRAIN_BUDGET_S  = "30"
        RBEE_SIGTERM_GRACE_S = "10"
      }
      kill_signal  = "SIGTERM"
      kill_timeout = "45s"

      # Token files, rendered from Nomad Variables with mode 0600 into the task's secrets
      # folder. A changed token is reloaded in place (SIGHUP), without a restart.
      template {
        destination   = "secrets/queen-token"
        perms         = "600"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{- with nomadVar "${var.tokens_path}" }}{{ .queen_token }}{{ end }}
        EOT
      }

      template {
        destination   = "secrets/hive-token"
        perms         = "600"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{- with nomadVar "${var.tokens_path}" }}{{ .hive_token }}{{ end }}
        EOT
      }

      template {
        destination   = "secrets/worker-token"
        perms         = "600"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{- with nomadVar "${var.tokens_path}" }}{{ .worker_token }}{{ end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
