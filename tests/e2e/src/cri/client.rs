//! A blocking CRI v1 client over containerd's unix socket: the calls kubelet makes, each with a
//! deadline, so a hung runtime fails a test instead of stalling it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The deadline of one CRI call (kubelet's default runtime request timeout is 2 minutes; ours
/// is shorter so a hang shows up quickly).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct CriClient {
    runtime: tokio::runtime::Runtime,
    service: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    address: PathBuf,
}

impl std::fmt::Debug for CriClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriClient")
            .field("address", &self.address)
            .finish()
    }
}

impl CriClient {
    /// Connects to containerd's gRPC socket, where the CRI plugin serves `runtime.v1`.
    pub fn connect(address: &Path) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("building the CRI client's runtime")?;
        let path = address.to_path_buf();
        let channel = runtime
            .block_on(async move {
                Endpoint::try_from("http://localhost")?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                        }
                    }))
                    .await
            })
            .with_context(|| format!("connecting to CRI at {}", address.display()))?;
        Ok(CriClient {
            runtime,
            service: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            address: address.to_path_buf(),
        })
    }

    fn call<T, F>(&self, what: &str, fut: F) -> Result<T>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, fut).await });
        match result {
            Err(_) => Err(anyhow!("CRI {what}: no answer within {CALL_TIMEOUT:?}")),
            Ok(Err(status)) => Err(anyhow!(
                "CRI {what}: {:?}: {}",
                status.code(),
                status.message()
            )),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    pub fn version(&self) -> Result<VersionResponse> {
        let mut c = self.service.clone();
        self.call("Version", c.version(VersionRequest::default()))
    }

    /// Waits until the CRI plugin answers `Status` (after a containerd start it first recovers
    /// its pods and containers, answering "server is not initialized yet" meanwhile).
    pub fn wait_ready(&self, timeout: std::time::Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.status() {
                Ok(_) => return Ok(()),
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(e.context(format!("CRI not ready after {timeout:?}")))
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }

    pub fn status(&self) -> Result<StatusResponse> {
        let mut c = self.service.clone();
        self.call("Status", c.status(StatusRequest { verbose: false }))
    }

    /// Whether the CRI plugin knows `image` (imported into namespace `k8s.io`).
    pub fn has_image(&self, image: &str) -> Result<bool> {
        let mut c = self.images.clone();
        let request = ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        Ok(self
            .call("ImageStatus", c.image_status(request))?
            .image
            .is_some())
    }

    /// RunPodSandbox with `handler`; returns the sandbox id.
    pub fn run_pod(&self, config: &PodSandboxConfig, handler: &str) -> Result<String> {
        let mut c = self.service.clone();
        let request = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        Ok(self
            .call("RunPodSandbox", c.run_pod_sandbox(request))?
            .pod_sandbox_id)
    }

    pub fn pod_status(&self, pod: &str) -> Result<PodSandboxStatus> {
        let mut c = self.service.clone();
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: pod.to_string(),
            verbose: false,
        };
        self.call("PodSandboxStatus", c.pod_sandbox_status(request))?
            .status
            .ok_or_else(|| anyhow!("PodSandboxStatus of {pod}: no status"))
    }

    pub fn stop_pod(&self, pod: &str) -> Result<()> {
        let mut c = self.service.clone();
        let request = StopPodSandboxRequest {
            pod_sandbox_id: pod.to_string(),
        };
        self.call("StopPodSandbox", c.stop_pod_sandbox(request))?;
        Ok(())
    }

    pub fn remove_pod(&self, pod: &str) -> Result<()> {
        let mut c = self.service.clone();
        let request = RemovePodSandboxRequest {
            pod_sandbox_id: pod.to_string(),
        };
        self.call("RemovePodSandbox", c.remove_pod_sandbox(request))?;
        Ok(())
    }

    pub fn list_pods(&self) -> Result<Vec<PodSandbox>> {
        let mut c = self.service.clone();
        let request = ListPodSandboxRequest { filter: None };
        Ok(self
            .call("ListPodSandbox", c.list_pod_sandbox(request))?
            .items)
    }

    /// CreateContainer in `pod`; returns the container id.
    pub fn create_container(
        &self,
        pod: &str,
        config: &ContainerConfig,
        pod_config: &PodSandboxConfig,
    ) -> Result<String> {
        let mut c = self.service.clone();
        let request = CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(pod_config.clone()),
        };
        Ok(self
            .call("CreateContainer", c.create_container(request))?
            .container_id)
    }

    pub fn start_container(&self, id: &str) -> Result<()> {
        let mut c = self.service.clone();
        let request = StartContainerRequest {
            container_id: id.to_string(),
        };
        self.call("StartContainer", c.start_container(request))?;
        Ok(())
    }

    pub fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        let mut c = self.service.clone();
        let request = StopContainerRequest {
            container_id: id.to_string(),
            timeout: timeout_secs,
        };
        self.call("StopContainer", c.stop_container(request))?;
        Ok(())
    }

    pub fn remove_container(&self, id: &str) -> Result<()> {
        let mut c = self.service.clone();
        let request = RemoveContainerRequest {
            container_id: id.to_string(),
        };
        self.call("RemoveContainer", c.remove_container(request))?;
        Ok(())
    }

    pub fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let mut c = self.service.clone();
        let request = ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        };
        self.call("ContainerStatus", c.container_status(request))?
            .status
            .ok_or_else(|| anyhow!("ContainerStatus of {id}: no status"))
    }

    pub fn list_containers(&self) -> Result<Vec<Container>> {
        let mut c = self.service.clone();
        let request = ListContainersRequest { filter: None };
        Ok(self
            .call("ListContainers", c.list_containers(request))?
            .containers)
    }

    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout_secs: i64) -> Result<ExecSyncResponse> {
        let mut c = self.service.clone();
        let request = ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_secs,
        };
        self.call("ExecSync", c.exec_sync(request))
    }

    /// Exec: the URL of containerd's streaming server where the process runs once a client
    /// connects (as `kubectl exec` does through kubelet).
    pub fn exec(&self, id: &str, cmd: &[&str], tty: bool, stdin: bool) -> Result<String> {
        let mut c = self.service.clone();
        let request = ExecRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        };
        Ok(self.call("Exec", c.exec(request))?.url)
    }

    pub fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let mut c = self.service.clone();
        let request = ContainerStatsRequest {
            container_id: id.to_string(),
        };
        self.call("ContainerStats", c.container_stats(request))?
            .stats
            .ok_or_else(|| anyhow!("ContainerStats of {id}: no stats"))
    }

    pub fn list_container_stats(&self, pod: &str) -> Result<Vec<ContainerStats>> {
        let mut c = self.service.clone();
        let request = ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: pod.to_string(),
                ..Default::default()
            }),
        };
        Ok(self
            .call("ListContainerStats", c.list_container_stats(request))?
            .stats)
    }

    pub fn update_resources(&self, id: &str, linux: LinuxContainerResources) -> Result<()> {
        let mut c = self.service.clone();
        let request = UpdateContainerResourcesRequest {
            container_id: id.to_string(),
            linux: Some(linux),
            ..Default::default()
        };
        self.call(
            "UpdateContainerResources",
            c.update_container_resources(request),
        )?;
        Ok(())
    }
}

pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}
