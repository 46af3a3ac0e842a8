//! Who may deploy: the management account, or a registered StackSets
//! delegated administrator (`CallAs: DELEGATED_ADMIN`). moto accepts no
//! StackSets delegated administrators, so Organizations is mocked here.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use aws_sdk_organizations::operation::describe_organization::DescribeOrganizationOutput;
use aws_sdk_organizations::operation::list_delegated_administrators::ListDelegatedAdministratorsOutput;
use aws_sdk_organizations::operation::list_roots::ListRootsOutput;
use aws_sdk_organizations::types::{DelegatedAdministrator, Organization, Root};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use glasswatch_stacksets::DeployError;
use glasswatch_stacksets::deploy::identify_account;
use glasswatch_stacksets::error::STACKSETS_PRINCIPAL;
use glasswatch_stacksets::stacks::Caller;

const MANAGEMENT: &str = "210987654321";
const ADMIN: &str = "310987654321";

fn organization() -> Rule {
    mock!(aws_sdk_organizations::Client::describe_organization).then_output(|| {
        DescribeOrganizationOutput::builder()
            .organization(
                Organization::builder()
                    .id("o-abcdefghij")
                    .master_account_id(MANAGEMENT)
                    .build(),
            )
            .build()
    })
}

fn roots() -> Rule {
    mock!(aws_sdk_organizations::Client::list_roots).then_output(|| {
        ListRootsOutput::builder()
            .roots(Root::builder().id("r-ab12").build())
            .build()
    })
}

fn admins() -> Rule {
    mock!(aws_sdk_organizations::Client::list_delegated_administrators)
        .match_requests(|input| input.service_principal() == Some(STACKSETS_PRINCIPAL))
        .then_output(|| {
            ListDelegatedAdministratorsOutput::builder()
                .delegated_administrators(DelegatedAdministrator::builder().id(ADMIN).build())
                .build()
        })
}

#[tokio::test]
async fn the_management_account_calls_as_itself() {
    let orgs = mock_client!(
        aws_sdk_organizations,
        RuleMode::MatchAny,
        [&organization(), &roots()]
    );
    let identity = identify_account(&orgs, MANAGEMENT.into()).await.unwrap();
    assert_eq!(identity.caller, Caller::Management);
    assert_eq!(identity.root_id, "r-ab12");
    assert_eq!(identity.organization_id, "o-abcdefghij");
}

#[tokio::test]
async fn a_registered_delegated_administrator_calls_as_delegated_admin() {
    let orgs = mock_client!(
        aws_sdk_organizations,
        RuleMode::MatchAny,
        [&organization(), &admins(), &roots()]
    );
    let identity = identify_account(&orgs, ADMIN.into()).await.unwrap();
    assert_eq!(identity.caller, Caller::DelegatedAdmin);
    assert_eq!(identity.management_account, MANAGEMENT);
}

#[tokio::test]
async fn any_other_member_is_told_how_to_register() {
    let orgs = mock_client!(
        aws_sdk_organizations,
        RuleMode::MatchAny,
        [&organization(), &admins(), &roots()]
    );
    let error = identify_account(&orgs, "444455556666".into())
        .await
        .unwrap_err();
    assert!(matches!(error, DeployError::NotAdministrator { .. }));
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "register-delegated-administrator --account-id 444455556666 --service-principal {STACKSETS_PRINCIPAL}"
        )),
        "{text}"
    );
}

mod regions {
    use aws_sdk_account::operation::list_regions::ListRegionsOutput;
    use aws_sdk_account::types::{Region, RegionOptStatus};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use glasswatch_core::Config;
    use glasswatch_stacksets::DeployError;
    use glasswatch_stacksets::aws::Silent;
    use glasswatch_stacksets::deploy::regions_with;

    fn config(regions: &str) -> Config {
        let text = include_str!("../../glasswatch.toml").replace(
            "regions = [\"us-east-1\", \"eu-west-1\"]",
            &format!("regions = {regions}"),
        );
        Config::parse(&text, "glasswatch.toml").unwrap()
    }

    fn account() -> aws_sdk_account::Client {
        account_with(&["eu-west-1", "us-east-1"])
    }

    /// An account where `enabled` are enabled and ap-east-1 is not.
    fn account_with(enabled: &'static [&'static str]) -> aws_sdk_account::Client {
        let listed = mock!(aws_sdk_account::Client::list_regions).then_output(move || {
            let mut out = ListRegionsOutput::builder();
            for name in enabled {
                out = out.regions(
                    Region::builder()
                        .region_name(*name)
                        .region_opt_status(RegionOptStatus::EnabledByDefault)
                        .build(),
                );
            }
            out.regions(
                Region::builder()
                    .region_name("ap-east-1")
                    .region_opt_status(RegionOptStatus::Disabled)
                    .build(),
            )
            .build()
        });
        mock_client!(aws_sdk_account, RuleMode::MatchAny, [&listed])
    }

    #[tokio::test]
    async fn enabled_regions_without_us_east_1_are_refused_with_the_reason() {
        let config = config("[]");
        let error = regions_with(
            &account_with(&["eu-west-1"]),
            &config,
            "210987654321",
            &Silent,
        )
        .await
        .unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, DeployError::ConfigMismatch(_)), "{text}");
        assert!(
            text.contains("us-east-1") && text.contains("root sign-in"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_opted_out_region_is_refused_with_how_to_enable_it() {
        let config = config(r#"["us-east-1", "eu-west-1", "ap-east-1"]"#);
        let error = regions_with(&account(), &config, "210987654321", &Silent)
            .await
            .unwrap_err();
        assert!(matches!(error, DeployError::RegionNotEnabled { .. }));
        let text = error.to_string();
        assert!(
            text.contains("aws account enable-region --region-name ap-east-1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn no_configured_regions_means_every_enabled_one() {
        let config = config("[]");
        let regions = regions_with(&account(), &config, "210987654321", &Silent)
            .await
            .unwrap();
        assert_eq!(regions, ["eu-west-1", "us-east-1"]);
    }
}
