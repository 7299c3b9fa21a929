"""Evaluates a launch file without ROS: minimal stand-ins for the launch / launch_ros APIs the
project's launch files use, then prints (JSON) the Node the file would start for the given
`name:=value` launch arguments. Usage: evaluate_launch.py SHARE_DIR LAUNCH_FILE [name:=value ...]"""
import importlib.util
import json
import sys
import types


class LaunchDescription:
    def __init__(self, entities):
        self.entities = entities


class DeclareLaunchArgument:
    def __init__(self, name, default_value='', description=''):
        self.name, self.default_value, self.description = name, default_value, description


class OpaqueFunction:
    def __init__(self, function, args=None):
        self.function, self.args = function, args or []


class LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


class FindPackageShare:
    share = None

    def __init__(self, package):
        self.package = package

    def perform(self, context):
        return FindPackageShare.share


class PathJoinSubstitution:
    def __init__(self, parts):
        self.parts = parts

    def perform(self, context):
        return '/'.join(p.perform(context) if hasattr(p, 'perform') else p for p in self.parts)


class Node:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


def install_stubs():
    modules = {
        'launch': {'LaunchDescription': LaunchDescription},
        'launch.actions': {'DeclareLaunchArgument': DeclareLaunchArgument, 'OpaqueFunction': OpaqueFunction},
        'launch.substitutions': {'LaunchConfiguration': LaunchConfiguration,
                                 'PathJoinSubstitution': PathJoinSubstitution},
        'launch_ros': {},
        'launch_ros.actions': {'Node': Node},
        'launch_ros.substitutions': {'FindPackageShare': FindPackageShare},
    }
    for name, attrs in modules.items():
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m


def main():
    share, path, given = sys.argv[1], sys.argv[2], sys.argv[3:]
    install_stubs()
    FindPackageShare.share = share
    spec = importlib.util.spec_from_file_location('launch_under_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    context = {}
    declared = {}
    for e in ld.entities:
        if isinstance(e, DeclareLaunchArgument):
            d = e.default_value
            declared[e.name] = e.description
            context[e.name] = d.perform(context) if hasattr(d, 'perform') else d
    for arg in given:
        name, value = arg.split(':=', 1)
        if name not in declared:
            raise SystemExit(f'unknown launch argument {name}')
        context[name] = value
    nodes = []
    for e in ld.entities:
        if isinstance(e, OpaqueFunction):
            nodes += e.function(context, *e.args)
    out = [{k: v for k, v in n.kwargs.items()} for n in nodes]
    print(json.dumps({'arguments': declared, 'nodes': out}))


if __name__ == '__main__':
    main()
