//! The organization's settings: which accounts are managed and how keyrot reaches them.

use keyrot_aws::org::{DEFAULT_MAX_PARALLEL_ACCOUNTS, DEFAULT_MEMBER_ROLE, OrgSettings};
use keyrot_core::accounts::{AccountId, AccountScope, Target};

use crate::error::{ConfigError, Reason};
use crate::setting::Setting;
use crate::sources::Sources;

impl Sources {
    /// How keyrot reaches an organization: the scope (`include`, `exclude`, `exempt`), the
    /// member role, the list role and the cap on parallel accounts.
    pub fn org(&self) -> Result<OrgSettings, ConfigError> {
        let targets = |setting| -> Result<Vec<Target>, ConfigError> {
            self.list(setting)
                .unwrap_or_default()
                .iter()
                .map(|t| t.parse::<Target>().map_err(|e| self.invalid(setting, e)))
                .collect()
        };
        let exempt = self
            .list(Setting::OrgExempt)
            .unwrap_or_default()
            .iter()
            .map(|a| AccountId::new(a).map_err(|e| self.invalid(Setting::OrgExempt, e)))
            .collect::<Result<_, _>>()?;
        let member_role = self
            .text(Setting::MemberRole)?
            .unwrap_or_else(|| DEFAULT_MEMBER_ROLE.to_owned());
        if !is_role_name(&member_role) {
            return Err(self.invalid(Setting::MemberRole, Reason::RoleName(member_role)));
        }
        let list_role = self.text(Setting::OrgListRole)?;
        if let Some(arn) = &list_role
            && !is_role_arn(arn)
        {
            return Err(self.invalid(Setting::OrgListRole, Reason::RoleArn(arn.clone())));
        }
        let max_parallel = self
            .text(Setting::MaxParallelAccounts)?
            .map(|text| match text.parse::<usize>() {
                Ok(n @ 1..=1000) => Ok(n),
                _ => Err(self.invalid(Setting::MaxParallelAccounts, Reason::Parallel(text))),
            })
            .transpose()?
            .unwrap_or(DEFAULT_MAX_PARALLEL_ACCOUNTS);
        Ok(OrgSettings {
            scope: AccountScope {
                include: targets(Setting::OrgInclude)?,
                exclude: targets(Setting::OrgExclude)?,
                exempt,
            },
            member_role,
            list_role,
            max_parallel,
        })
    }
}

/// A role's name with its path (`keyrot-member`, `keyrot/keyrot-member`): IAM's characters, a
/// name of at most 64, no empty path segment.
fn is_role_name(role: &str) -> bool {
    let name_char = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    let name = role.rsplit('/').next().unwrap_or_default();
    role.len() <= 512
        && (1..=64).contains(&name.len())
        && role
            .split('/')
            .all(|part| !part.is_empty() && part.chars().all(name_char))
}

/// `arn:<partition>:iam::<12 digits>:role/<name with path>`.
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    prefix == "arn"
        && ["aws", "aws-cn", "aws-us-gov"].contains(&partition)
        && service == "iam"
        && region.is_empty()
        && AccountId::new(account).is_ok()
        && resource.strip_prefix("role/").is_some_and(is_role_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup_in;

    fn org(vars: &[(&str, &str)]) -> Result<OrgSettings, ConfigError> {
        Sources::lambda(lookup_in(vars)).org()
    }

    #[test]
    fn the_defaults_are_the_whole_organization_through_keyrot_member() {
        assert_eq!(org(&[]).unwrap(), OrgSettings::default());
        let settings = org(&[
            ("KEYROT_ORG_INCLUDE", "ou-ab12-11111111, 111111111111"),
            ("KEYROT_ORG_EXCLUDE", "ou-ab12-22222222"),
            ("KEYROT_ORG_EXEMPT", "333333333333"),
            ("KEYROT_MEMBER_ROLE", "keyrot/keyrot-member"),
            (
                "KEYROT_ORG_LIST_ROLE",
                "arn:aws:iam::444444444444:role/keyrot-org-list",
            ),
            ("KEYROT_MAX_PARALLEL_ACCOUNTS", "50"),
        ])
        .unwrap();
        assert_eq!(settings.scope.include.len(), 2);
        assert_eq!(settings.scope.exclude[0].to_string(), "ou-ab12-22222222");
        assert!(
            settings
                .scope
                .is_exempt(&AccountId::new("333333333333").unwrap())
        );
        assert_eq!(settings.member_role, "keyrot/keyrot-member");
        assert_eq!(settings.max_parallel, 50);
    }

    #[test]
    fn bad_values_are_refused_by_name_with_what_to_write() {
        let cases = [
            (
                ("KEYROT_ORG_INCLUDE", "111111111111,ou-x"),
                "KEYROT_ORG_INCLUDE: \"ou-x\" is neither an account id (twelve digits) nor an \
                 organization root or unit id (r-xxxx, ou-xxxx-xxxxxxxx)",
            ),
            (
                ("KEYROT_ORG_EXEMPT", "ou-ab12-11111111"),
                "KEYROT_ORG_EXEMPT: \"ou-ab12-11111111\" is not an account id: write its twelve \
                 digits",
            ),
            (
                ("KEYROT_MEMBER_ROLE", "arn:aws:iam::1:role/x"),
                "KEYROT_MEMBER_ROLE: \"arn:aws:iam::1:role/x\" is not a role name",
            ),
            (
                ("KEYROT_MEMBER_ROLE", "keyrot//member"),
                "KEYROT_MEMBER_ROLE: \"keyrot//member\" is not a role name",
            ),
            (
                ("KEYROT_ORG_LIST_ROLE", "keyrot-org-list"),
                "KEYROT_ORG_LIST_ROLE: \"keyrot-org-list\" is not a role ARN",
            ),
            (
                ("KEYROT_ORG_LIST_ROLE", "arn:aws:iam::44444444444:role/list"),
                "KEYROT_ORG_LIST_ROLE: \"arn:aws:iam::44444444444:role/list\" is not a role ARN",
            ),
            (
                ("KEYROT_MAX_PARALLEL_ACCOUNTS", "0"),
                "KEYROT_MAX_PARALLEL_ACCOUNTS: \"0\" is not a number of accounts: write a whole \
                 number from 1 to 1000",
            ),
        ];
        for ((var, value), message) in cases {
            let err = org(&[(var, value)]).unwrap_err();
            assert!(
                err.chain().starts_with(message),
                "{var}={value}: {}",
                err.chain()
            );
            assert_eq!(
                Some(err.setting().unwrap().spelling().var.unwrap()),
                Some(var)
            );
        }
    }

    #[test]
    fn the_file_has_an_org_table() {
        let file = "[org]\ninclude = [\"r-ab12\"]\nexclude = [\"111111111111\"]\n\
                    max_parallel_accounts = 3\n";
        let sources = Sources::new()
            .file_text(std::path::Path::new("keyrot.toml"), file)
            .unwrap();
        let settings = sources.org().unwrap();
        assert_eq!(settings.scope.include[0].to_string(), "r-ab12");
        assert_eq!(settings.max_parallel, 3);
        let bad = Sources::new()
            .file_text(
                std::path::Path::new("keyrot.toml"),
                "[org]\nmax_parallel_accounts = 1001\n",
            )
            .unwrap()
            .org()
            .unwrap_err();
        assert!(
            bad.chain()
                .starts_with("[org] max_parallel_accounts in keyrot.toml: \"1001\""),
            "{}",
            bad.chain()
        );
    }
}
