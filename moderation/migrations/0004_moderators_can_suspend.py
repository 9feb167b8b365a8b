"""Moderators act on the flag queue's "suspend the user": they may add, see and lift
suspensions (still not read conversations)."""

from django.db import migrations

PERMISSIONS = ["add_suspension", "view_suspension", "change_suspension"]


def grant(apps, schema_editor):  # type: ignore[no-untyped-def]
    from django.contrib.auth.management import create_permissions

    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, verbosity=0, apps=apps)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Moderators")
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="accounts", codename__in=PERMISSIONS)
    )


def revoke(apps, schema_editor):  # type: ignore[no-untyped-def]
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name="Moderators"):
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="accounts", codename__in=PERMISSIONS)
        )


class Migration(migrations.Migration):
    dependencies = [("moderation", "0003_access_log"), ("accounts", "0002_quotas")]

    operations = [migrations.RunPython(grant, revoke)]
