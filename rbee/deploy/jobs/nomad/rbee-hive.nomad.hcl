# rbee hive: one per client node. It keeps the node's model catalog, spawns and supervises
# the workers, and sends heartbeats to the queen.
#
#   rbee deploy nomad --check                      # structural checks, no server needed
#   nomad job run jobs/nomad/rbee-hive.nomad.hcl   # or: rbee deploy nomad --job rbee-hive
#
# Run the queen job first: each hive finds the queen through Nomad service discovery
# (service `queen_service`) and is restarted when the queen moves. Tokens come from the same
# Nomad Variable as the queen's (docs/deployment.md, "Cluster with Nomad"). To keep hives off
# some clients, put those clients in another node pool or add a constraint.
#
# Each hive reserves `gpus` NVIDIA GPUs through Nomad's device plugin, so the job runs only on
# clients that have that many (a system job skips the others).
#
# The queen places work only on registered nodes: register each client once with
# `rbee setup add-node` (its address as --ssh-host); the queen then uses the hive running here.

variable "datacenters" {
  description = "Datacenters whose client nodes each run a hive."
  type        = list(string)
  default     = ["dc1"]
}

variable "rbee_bin" {
  description = "Absolute path of the rbee executable on every client node."
  type        = string
  default     = "/opt/rbee/bin/rbee"
}

variable "port" {
  description = "Port of the hive's API on each node."
  type        = number
  default     = 9200
}

variable "worker_port_start" {
  description = "First port of the workers a hive spawns (each takes the next free one)."
  type        = number
  default     = 8081
}

variable "data_dir" {
  description = "Folder for the node's model catalog and downloaded models; kept across restarts."
  type        = string
  default     = "/var/lib/rbee/hive"
}

variable "queen_service" {
  description = "Nomad service name of the queen, used to find its address."
  type        = string
  default     = "rbee-queen"
}

variable "tokens_path" {
  description = "Nomad Variable holding queen_token, hive_token and worker_token."
  type        = string
  default     = "nomad/jobs/rbee"
}

variable "gpus" {
  description = "NVIDIA GPUs each hive reserves for its workers; clients with fewer run no hive."
  type        = number
  default     = 1
}

variable "cpu_mhz" {
  description = "CPU reserved for the hive and the workers it spawns (they share its allocation)."
  type        = number
  default     = 4000
}

variable "memory_mb" {
  description = "Memory reserved for the hive and the workers it spawns, models included."
  type        = number
  default     = 8192
}

job "rbee-hive" {
  datacenters = var.datacenters
  type        = "system"

  # One node at a time. Where Nomad runs system-job deployments, a hive version that does not
  # turn healthy is rolled back; older Nomad releases enforce only max_parallel and stagger
  # for system jobs (one node every 30 s, no health gate: revert with `nomad job revert`).
  update {
    max_parallel     = 1
    stagger          = "30s"
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "3m"
    auto_revert      = true
  }

  group "hive" {
    # Service discovery drops the hive, then it is told to stop 5 s later.
    shutdown_delay = "5s"

    network {
      port "http" {
        static = var.port
      }
    }

    # System jobs are not rescheduled: keep restarting, with a pause after each burst.
    restart {
      attempts = 5
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "rbee-hive"
      port     = "http"
      provider = "nomad"

      check {
        name     = "hive health"
        type     = "http"
        path     = "/v1/health"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    task "hive" {
      driver = "raw_exec"

      config {
        command = var.rbee_bin
        args = [
          "hive",
          "--host", "${NOMAD_IP_http}",
          "--port", "${NOMAD_PORT_http}",
          "--worker-port-start", "${var.worker_port_start}",
          "--data-dir", var.data_dir,
          "--queen-url", "${RBEE_QUEEN_URL}",
          "--token-file", "${NOMAD_SECRETS_DIR}/hive-token",
          "--queen-token-file", "${NOMAD_SECRETS_DIR}/queen-token",
          "--worker-token-file", "${NOMAD_SECRETS_DIR}/worker-token",
        ]
      }

      # On SIGTERM the hive stops admitting, lets running generations finish for up to
      # RBEE_DRAIN_BUDGET_S, then stops its workers (SIGKILL after RBEE_SIGTERM_GRACE_S).
      # kill_timeout must cover both (`rbee deploy nomad --check` enforces it). Nomad clients
      # cap kill_timeout at their `max_kill_timeout` (30 s unless raised in the client config).
      env {
        RBEE_DRAIN_BUDGET_S  = "30"
        RBEE_SIGTERM_GRACE_S = "10"
      }
      kill_signal  = "SIGTERM"
      kill_timeout = "45s"

      # The queen's address, from Nomad service discovery; the hive restarts when it changes.
      template {
        destination = "local/queen.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
        {{- range nomadService "${var.queen_service}" }}
        RBEE_QUEEN_URL=http://{{ .Address }}:{{ .Port }}
        {{- end }}
        EOT
      }

      # Token files, rendered from Nomad Variables with mode 0600 into the task's secrets
      # folder. A changed token is reloaded in place (SIGHUP), without a restart.
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
        destination   = "secrets/queen-token"
        perms         = "600"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
        {{- with nomadVar "${var.tokens_path}" }}{{ .queen_token }}{{ end }}
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
        cpu    = var.cpu_mhz
        memory = var.memory_mb

        # Reserved by the NVIDIA device plugin (`plugin "nomad-device-nvidia"` in the client
        # config), which puts their UUIDs in NVIDIA_VISIBLE_DEVICES: the hive runs its workers on
        # those GPUs only. raw_exec leaves every GPU visible; exec mounts only the reserved ones.
        # CPU-only clients: delete this block in a copy of the job (docs/deployment.md).
        device "nvidia/gpu" {
          count = var.gpus
        }
      }
    }
  }
}
