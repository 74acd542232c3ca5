//! What to execute for a container: program, arguments, environment and working folder, from
//! its spec, its image's launcher and its mounts. Paths are rewritten first (see `volumes`),
//! then `$(VAR)` references are expanded from the container's environment, as Kubernetes does.
//!
//! For an executable image, the executable stands in for `command[0]` (the image's entrypoint
//! when `command` is unset); for a shell image, `command` (or else `args`, or else `sh`) runs
//! with the host's programs, `command[0]` looked up on `PATH`.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, EnvVar};

use super::image::Launcher;
use super::volumes::Mounts;

/// What a container's expressions (`fieldRef`) may read about its pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub node_name: String,
    pub service_account: String,
    pub pod_ip: String,
    pub host_ip: String,
}

/// A container's process, ready to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchSpec {
    pub program: String,
    pub args: Vec<String>,
    /// In order; a later entry overrides an earlier one of the same name.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
}

/// Builds the launch of `container`; an error is a message for `CreateContainerConfigError`.
pub fn launch_spec(
    container: &Container,
    launcher: &Launcher,
    mounts: &Mounts,
    facts: &PodFacts,
    extra_env: &[(String, String)],
) -> Result<LaunchSpec, String> {
    let env = environment(container, mounts, facts, extra_env)?;
    let lookup: HashMap<&str, &str> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let prepare = |text: &String| expand(&mounts.rewrite(text), &lookup);

    let command = container.command.as_deref().unwrap_or_default();
    let args = container.args.as_deref().unwrap_or_default();
    let (program, args) = match launcher {
        Launcher::Executable(path) => {
            let rest = command.iter().skip(1).chain(args).map(prepare).collect();
            (path.to_string_lossy().into_owned(), rest)
        }
        Launcher::Shell => {
            let words: Vec<String> = if command.is_empty() {
                args.iter().map(prepare).collect()
            } else {
                command.iter().chain(args).map(prepare).collect()
            };
            match words.split_first() {
                Some((program, rest)) => (program.clone(), rest.to_vec()),
                None => ("sh".to_string(), Vec::new()),
            }
        }
    };
    let working_dir = container
        .working_dir
        .as_ref()
        .filter(|dir| !dir.is_empty())
        .map(|dir| PathBuf::from(prepare(dir)));
    Ok(LaunchSpec {
        program,
        args,
        env,
        working_dir,
    })
}

/// `KANDLE_HOST` and `HOSTNAME`, then the kubelet's extra env, then the container's own.
fn environment(
    container: &Container,
    mounts: &Mounts,
    facts: &PodFacts,
    extra_env: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let mut env = vec![
        ("KANDLE_HOST".to_string(), facts.pod_ip.clone()),
        ("HOSTNAME".to_string(), facts.name.clone()),
    ];
    env.extend(extra_env.iter().cloned());
    for var in container.env.as_deref().unwrap_or_default() {
        if let Some(value) = env_value(var, mounts, facts, &env)? {
            env.push((var.name.clone(), value));
        }
    }
    Ok(env)
}

fn env_value(
    var: &EnvVar,
    mounts: &Mounts,
    facts: &PodFacts,
    earlier: &[(String, String)],
) -> Result<Option<String>, String> {
    let Some(source) = &var.value_from else {
        let lookup: HashMap<&str, &str> = earlier
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let raw = var.value.as_deref().unwrap_or_default();
        return Ok(Some(expand(&mounts.rewrite(raw), &lookup)));
    };
    if let Some(field) = &source.field_ref {
        let value = match field.field_path.as_str() {
            "metadata.name" => &facts.name,
            "metadata.namespace" => &facts.namespace,
            "metadata.uid" => &facts.uid,
            "spec.nodeName" => &facts.node_name,
            "spec.serviceAccountName" => &facts.service_account,
            "status.podIP" | "status.podIPs" => &facts.pod_ip,
            "status.hostIP" | "status.hostIPs" => &facts.host_ip,
            other => {
                return Err(format!(
                    "env {}: fieldRef {other} is not supported by this kubelet",
                    var.name
                ))
            }
        };
        return Ok(Some(value.clone()));
    }
    let optional = source
        .config_map_key_ref
        .as_ref()
        .and_then(|r| r.optional)
        .or(source.secret_key_ref.as_ref().and_then(|r| r.optional))
        .unwrap_or(false);
    if optional {
        return Ok(None);
    }
    Err(format!(
        "env {}: only value and valueFrom.fieldRef are supported by this kubelet",
        var.name
    ))
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined reference is
/// kept as written, and `$$` is a literal `$`.
pub fn expand(text: &str, env: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(after_dollar) = after.strip_prefix('$') {
            out.push('$');
            rest = after_dollar;
        } else if let Some((name, tail)) = after
            .strip_prefix('(')
            .and_then(|inner| inner.split_once(')'))
        {
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use k8s_openapi::api::core::v1::{
        EnvVarSource, HostPathVolumeSource, ObjectFieldSelector, Volume, VolumeMount,
    };

    use super::super::volumes::{mounts, volume_dirs};
    use super::*;

    fn facts() -> PodFacts {
        PodFacts {
            name: "p".into(),
            namespace: "ns".into(),
            pod_ip: "127.1.0.2".into(),
            host_ip: "127.0.0.1".into(),
            ..Default::default()
        }
    }

    fn model_mounts() -> Mounts {
        let volume = Volume {
            name: "model".into(),
            host_path: Some(HostPathVolumeSource {
                path: "/cache".into(),
                type_: None,
            }),
            ..Default::default()
        };
        let dirs = volume_dirs(&[volume], &[], &[], Path::new("/p"));
        let mount = VolumeMount {
            name: "model".into(),
            mount_path: "/models/model".into(),
            sub_path: Some("m".into()),
            ..Default::default()
        };
        mounts(&[mount], &dirs).unwrap()
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    #[test]
    fn executable_images_get_the_args_rewritten() {
        let container = Container {
            name: "kandle-runtime".into(),
            args: Some(vec![
                "--model-dir".into(),
                "/models/model".into(),
                "--port".into(),
                "8080".into(),
            ]),
            ..Default::default()
        };
        let spec = launch_spec(
            &container,
            &Launcher::Executable("/bin/kandle-runtime".into()),
            &model_mounts(),
            &facts(),
            &[("KANDLE_THREADS".into(), "1".into())],
        )
        .unwrap();
        assert_eq!(spec.program, "/bin/kandle-runtime");
        assert_eq!(spec.args, ["--model-dir", "/cache/m", "--port", "8080"]);
        assert_eq!(
            spec.env[..3],
            [
                ("KANDLE_HOST".to_string(), "127.1.0.2".to_string()),
                ("HOSTNAME".to_string(), "p".to_string()),
                ("KANDLE_THREADS".to_string(), "1".to_string()),
            ]
        );
    }

    #[test]
    fn shell_images_run_command_then_args_with_env_rewritten_and_expanded() {
        let mut pod_name = var("POD", "");
        pod_name.value = None;
        pod_name.value_from = Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                api_version: None,
            }),
            ..Default::default()
        });
        let container = Container {
            name: "fetch".into(),
            command: Some(vec!["sh".into(), "-c".into()]),
            args: Some(vec![
                "tar -C /models/model -xf $(DIR)/a # $(POD) $(NOPE) $$(POD)".into(),
            ]),
            env: Some(vec![var("DIR", "/models/model"), pod_name]),
            ..Default::default()
        };
        let spec =
            launch_spec(&container, &Launcher::Shell, &model_mounts(), &facts(), &[]).unwrap();
        assert_eq!(spec.program, "sh");
        assert_eq!(
            spec.args,
            ["-c", "tar -C /cache/m -xf /cache/m/a # p $(NOPE) $(POD)"]
        );
        let env: BTreeMap<_, _> = spec.env.into_iter().collect();
        assert_eq!(env["DIR"], "/cache/m");
        assert_eq!(env["POD"], "p");
    }

    #[test]
    fn shell_images_without_command_run_args_or_sh() {
        let container = Container {
            args: Some(vec!["python3".into(), "-m".into(), "http.server".into()]),
            ..Default::default()
        };
        let spec = launch_spec(
            &container,
            &Launcher::Shell,
            &Mounts::default(),
            &facts(),
            &[],
        )
        .unwrap();
        assert_eq!((spec.program.as_str(), spec.args.len()), ("python3", 2));
        let spec = launch_spec(
            &Container::default(),
            &Launcher::Shell,
            &Mounts::default(),
            &facts(),
            &[],
        )
        .unwrap();
        assert_eq!(spec.program, "sh");
    }

    #[test]
    fn unsupported_env_sources_are_config_errors() {
        let mut secret = var("S", "");
        secret.value = None;
        secret.value_from = Some(EnvVarSource::default());
        let container = Container {
            env: Some(vec![secret]),
            ..Default::default()
        };
        let error = launch_spec(
            &container,
            &Launcher::Shell,
            &Mounts::default(),
            &facts(),
            &[],
        )
        .unwrap_err();
        assert!(error.contains("env S"), "{error}");
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let env = HashMap::from([("A", "1")]);
        assert_eq!(expand("$(A)-$(B)-$$(A)-$A-$", &env), "1-$(B)-$(A)-$A-$");
    }
}
