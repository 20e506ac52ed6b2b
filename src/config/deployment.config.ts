import { TextEnv } from './env-kinds';

/** What the deployment says about itself: /api/v1/meta and tokenplace_build_info. */
export class DeploymentEnv {
  @TextEnv(
    'TOKEN_PLACE_ENV',
    'Deployment profile reported by /api/v1/meta (development, staging, production)',
    64,
  )
  tokenPlaceEnv = 'development';

  @TextEnv(
    'TOKENPLACE_DEPLOY_ENV',
    'prod, staging or dev for /api/v1/meta; inferred from TOKEN_PLACE_ENV or the Host header when unset',
    64,
  )
  deployEnv = '';

  @TextEnv(
    'TOKENPLACE_RELEASE_VERSION',
    'Release version for /api/v1/meta and tokenplace_build_info',
    128,
  )
  releaseVersion = '';

  @TextEnv(
    'TOKENPLACE_IMAGE_TAG',
    'Image tag for /api/v1/meta and tokenplace_build_info (the chart sets it)',
    256,
  )
  imageTag = '';

  @TextEnv('TOKENPLACE_GIT_SHA', 'Git commit for /api/v1/meta and tokenplace_build_info', 64)
  gitSha = '';

  @TextEnv('TOKENPLACE_CHART_VERSION', 'Helm chart version (informational, set by the chart)', 64)
  chartVersion = '';
}

export type DeploymentSettings = Readonly<DeploymentEnv>;

export function deploymentSettings(s: DeploymentEnv): DeploymentSettings {
  const { tokenPlaceEnv, deployEnv, releaseVersion, imageTag, gitSha, chartVersion } = s;
  return { tokenPlaceEnv, deployEnv, releaseVersion, imageTag, gitSha, chartVersion };
}
