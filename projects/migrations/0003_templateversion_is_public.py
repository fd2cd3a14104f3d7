"""Versions are published one by one: only those current while their template was public are readable
by other organizations. Existing public templates publish their current version only: whether an
earlier one was ever public is not known, so it stays private (fail closed)."""
from django.db import migrations, models
from django.db.models import F


def publish_current_versions(apps, schema_editor):
    from config.tenancy import dangerously_unscoped

    TemplateVersion = apps.get_model("projects", "TemplateVersion")
    alias = schema_editor.connection.alias
    with dangerously_unscoped():  # row level security: every organization's templates
        TemplateVersion.objects.using(alias).filter(
            template__is_public=True, version=F("template__current_version")).update(is_public=True)


class Migration(migrations.Migration):

    dependencies = [
        ('projects', '0002_template_templateversion_and_more'),
    ]

    operations = [
        migrations.AddField(
            model_name='templateversion',
            name='is_public',
            field=models.BooleanField(default=False, help_text='Published in the public library'),
        ),
        migrations.RunPython(publish_current_versions, migrations.RunPython.noop),
    ]
